#pragma once

// Describing the processes a tree still holds (the report's leftovers).

#include <cgrun/report.hpp>

#include <sys/types.h>

#include <vector>

namespace cgrun::detail {

// The main process's process group and session: leaving either is an escape.
struct origin {
    pid_t pgid = -1;
    pid_t sid = -1;
};

// Describes the live processes among `pids` (at most max_leftovers of them; `total` counts
// all). Reads /proc/PID/stat and /proc/PID/cmdline of each described process.
void record_leftovers(std::vector<pid_t> pids, const origin& main, std::vector<leftover>& out, int& total);

} // namespace cgrun::detail
