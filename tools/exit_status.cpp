#include "exit_status.hpp"

#include <cgrun/error.hpp>

namespace cgrun::tool {

int spawn_failure_status(const std::error_code& code) noexcept
{
    if (code == errc::exec_not_found)
        return exit_not_found;
    if (code == errc::exec_not_executable)
        return exit_not_executable;
    return exit_internal;
}

int exit_status(const run_report& r, std::optional<int> caught_signal, bool preserve_status) noexcept
{
    if (caught_signal)
        return 128 + *caught_signal;
    if ((r.timed_out || r.cpu_time_exceeded) && !preserve_status)
        return exit_timed_out;
    if (r.signal)
        return 128 + *r.signal;
    if (r.exit_code)
        return *r.exit_code;
    return exit_internal;
}

} // namespace cgrun::tool
