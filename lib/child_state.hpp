#pragma once

#include "cgroup_fs.hpp"
#include "spawn.hpp"
#include "sys.hpp"
#include "systemd_scope.hpp"

#include <cgrun/child.hpp>

#include <memory>
#include <optional>

namespace cgrun::detail {

struct child_state {
    options opts;
    containment_info info;
    std::chrono::steady_clock::time_point started;
    std::optional<std::chrono::steady_clock::time_point> deadline;

    pid_t pid = -1;
    unique_fd pidfd;
    std::array<unique_fd, 3> ends;
    cgroup_dir cg;                          // scope or cgroup method
    std::shared_ptr<scope_manager> manager; // scope method
    sentinel keeper; // scope method with the memory controller: see start_sentinel()
    // memory.events, polled with the pidfd: an OOM kill is sampled while the cgroup exists.
    unique_fd memory_events;

    // The main process's status once it exited; reaped tells whether it was waited for.
    std::optional<sys::wait_status> exit;
    bool reaped = false;
    std::optional<kill_info> kill;
    bool timed_out = false;
    bool cancelled = false;
    int remaining = 0;
    cpu_times cpu;
    std::optional<std::uint64_t> memory_peak;
    bool oom = false;
    std::optional<std::string> late_error; // a cleanup step that failed

    double wall_ms = 0;
    std::optional<run_report> report;
    bool detached = false;
};

} // namespace cgrun::detail
