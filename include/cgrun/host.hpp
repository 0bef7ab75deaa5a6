#pragma once

// What the host offers for containment, as `cgrun --check` reports it.

#include <cgrun/export.hpp>
#include <cgrun/options.hpp>

#include <optional>
#include <string>
#include <vector>

namespace cgrun {

// What the host offers; used by `cgrun --check`.
struct host_info {
    std::optional<std::string> cgroup2_mount;
    std::optional<std::string> own_cgroup;
    bool cgroup_kill = false;         // cgroup.kill exists in the own cgroup (or the mount root's children)
    std::optional<std::string> delegated_parent; // where the cgroup method would create its leaves
    std::optional<std::string> delegated_parent_error;
    bool clone_into_cgroup = false;   // clone3(CLONE_INTO_CGROUP) worked into a test leaf
    std::optional<std::string> clone_into_cgroup_error;
    bool systemd_reachable = false;   // the chosen systemd manager answered
    std::optional<std::string> systemd_error;
    std::vector<std::string> controllers; // cgroup.controllers of the delegated parent
};

[[nodiscard]] CGRUN_EXPORT host_info probe_host(const options& opts);

} // namespace cgrun
