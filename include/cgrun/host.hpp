#pragma once

// What the host offers for containment, as `cgrun --check` reports it.

#include <cgrun/export.hpp>
#include <cgrun/error.hpp>
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
    // systemd marked the default parent delegated (Delegate=yes): auto then tries the cgroup
    // method before scope. `delegation_marker` names the xattr that says so
    // ("trusted.delegate" or "user.delegate"). Never set for an explicit cgroup parent.
    bool delegated = false;
    std::optional<std::string> delegation_marker;
    bool clone_into_cgroup = false;   // clone3(CLONE_INTO_CGROUP) worked into a test leaf
    std::optional<std::string> clone_into_cgroup_error;
    bool systemd_reachable = false;   // the chosen systemd manager answered
    std::optional<std::string> systemd_error;
    std::vector<std::string> controllers; // cgroup.controllers of the delegated parent
    // Limits (-p) need the setup step: the delegated parent holds processes, so the kernel's
    // "no internal processes" rule forbids enabling its controllers for cgrun's leaves.
    struct setup_step {
        std::string from;   // the cgroup holding the processes
        std::string to;     // the leaf they would move to
        int processes = 0;  // how many would move
        std::vector<std::string> controllers; // offered but not enabled for children
    };
    std::optional<setup_step> setup_needed;
};

[[nodiscard]] CGRUN_EXPORT host_info probe_host(const options& opts);

// The setup step for limits in a delegated cgroup (a container's root, a Delegate=yes unit, a
// delegated user subtree): moves every process of the cgroup into a leaf of it and enables
// in its cgroup.subtree_control every controller its cgroup.controllers offers, so that
// cgrun's leaves, siblings of that leaf, can have limits. It moves processes the caller may
// not own: it is never done implicitly. Idempotent: run again (also from inside the leaf)
// it finds nothing to move or enable.
struct setup_options {
    std::string cgroup; // the cgroup to set up, "/a/b"; empty = the caller's own
    std::string leaf = "init";
};
struct setup_result {
    std::string cgroup;                // the cgroup set up
    std::string leaf;                  // where its processes live now
    std::vector<int> moved;            // pids moved by this call
    std::vector<std::string> enabled;  // controllers this call enabled
    std::vector<std::string> controllers; // enabled for children now
    // What was done but weaker than asked, each a sentence (e.g. the leaf could not be marked,
    // so the cgroup method will not find the parent by itself). Empty when all went as asked.
    std::vector<std::string> warnings;
};
// Errors: cgroup2_unavailable, cgroup_not_delegated (not writable, a threaded cgroup, a
// process that cannot be moved), controller_unavailable (a controller that cannot be
// enabled), each naming what it touched.
[[nodiscard]] CGRUN_EXPORT result<setup_result> setup_cgroup(const setup_options& o);

} // namespace cgrun
