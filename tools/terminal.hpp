#pragma once

#include <cgrun/unique_fd.hpp>

#include <sys/types.h>

namespace cgrun::tool {

// The library starts the command in a process group of its own. When cgrun is the
// foreground job of its controlling terminal, that group is handed the terminal, as a
// shell does for a job, so that the command can read it and gets its Ctrl-C; cgrun takes
// it back when the run is over. Calls from a background cgrun need SIGTTOU blocked.
class terminal_handoff {
public:
    terminal_handoff() = default;
    terminal_handoff(terminal_handoff&&) noexcept = default;
    terminal_handoff& operator=(terminal_handoff&&) noexcept = default;
    ~terminal_handoff() { take_back(); }

    // Does nothing unless cgrun's process group is in the foreground of /dev/tty.
    [[nodiscard]] static terminal_handoff begin(pid_t command_pgid);

    [[nodiscard]] bool active() const noexcept { return tty_.valid(); }
    // Gives the terminal to the command's group and resumes it: it may have been stopped
    // by SIGTTIN/SIGTTOU before it had the terminal, or by Ctrl-Z.
    void give() noexcept;
    // Gives the terminal back to cgrun's group.
    void take_back() noexcept;
    // The command stopped (Ctrl-Z): take the terminal back and stop cgrun too, so that the
    // shell sees its job stopped; once continued (fg, bg), give() again.
    void relay_stop() noexcept;

private:
    unique_fd tty_;
    pid_t command_pgid_ = -1;
    pid_t own_pgid_ = -1;
    bool given_ = false;
};

} // namespace cgrun::tool
