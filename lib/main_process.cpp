// The command's own process: collecting its exit status through its pidfd.

#include "tree.hpp"

namespace cgrun::detail {

result<void> main_process::collect(bool peek)
{
    if (reaped)
        return {};
    auto ws = wait(pidfd.get(), peek);
    if (!ws)
        return ws.error();
    if (ws->exited) {
        exit = *ws;
        reaped = !peek;
    }
    return {};
}

} // namespace cgrun::detail
