#pragma once

// The cgroup2 hierarchy as this process sees it.

#include <cgrun/error.hpp>

#include <sys/types.h>

#include <string>

namespace cgrun::detail {

struct cgroup2_root {
    std::string mount; // e.g. /sys/fs/cgroup/unified
    int fd = -1;       // directory fd of the mount, open for the life of the process
};

// Discovered once from /proc/self/mountinfo. errc::cgroup2_unavailable when absent.
result<cgroup2_root> cgroup2();

// The cgroup2 path of process `pid` ("/..."), as this process's cgroup namespace sees it.
result<std::string> process_cgroup(pid_t pid);

// This process's cgroup2 path ("/..."), read anew each time (systemd may move us).
result<std::string> own_cgroup();

} // namespace cgrun::detail
