#pragma once

// Everything a child owns and has learned, from spawn to its report.

#include "leftovers.hpp"
#include "tree.hpp"

#include <cgrun/child.hpp>

#include <array>
#include <memory>
#include <optional>

namespace cgrun::detail {

struct child_state {
    options opts;
    cgrun::placement where;
    std::chrono::steady_clock::time_point started;
    std::chrono::system_clock::time_point report_start; // started, as the report's start_time
    std::optional<std::chrono::steady_clock::time_point> deadline;
    // With a cpu_time limit: when wait_for() reads the tree's CPU time next.
    std::optional<std::chrono::steady_clock::time_point> next_cpu_check;

    main_process main;
    std::array<unique_fd, 3> ends;
    std::unique_ptr<tree> held; // never null once spawned
    // memory.events, polled with the pidfd: an OOM kill is sampled while the cgroup exists.
    unique_fd memory_events;
    guard_ticket guarded; // held while the spawner-death guard would kill the tree

    std::optional<kill_info> kill;
    bool timed_out = false;
    bool cpu_time_exceeded = false;
    bool cancelled = false;
    int remaining = 0;
    origin main_origin; // the main process's group and session, for leftovers' `escaped`
    std::optional<std::vector<leftover>> leftovers; // recorded once, when the run ends
    int leftovers_total = 0;
    usage used;
    std::optional<std::string> late_error; // a cleanup step that failed

    double wall_ms = 0;
    std::optional<run_report> report;
    bool detached = false;
};

// With a cpu_time limit: reads the tree's CPU time; true when the limit is used up, else
// sets next_cpu_check (cpu_limit.cpp).
bool cpu_time_used_up(child_state& st);

// The report of a finished run: a pure function of its state.
run_report make_report(const child_state& st);

} // namespace cgrun::detail
