#pragma once

// The per-spawner delegated scope (spawner_scope.cpp): one transient Delegate=yes scope per
// spawning process, the parent of the cgroup method's leaves with options::cgroup::delegated_scope.

#include <cgrun/error.hpp>
#include <cgrun/options.hpp>

#include <string>

namespace cgrun::detail {

struct spawner_scope_info {
    std::string unit;   // "cgrun-<pid>.scope"
    std::string cgroup; // its cgroup, as our cgroup namespace sees it
};

// This process's scope, started on first use (and anew in a forked process, or after
// forget_spawner_scope()). Errors: systemd_unavailable, scope_failed, spawn_failed (no guard).
result<spawner_scope_info> spawner_scope(const options& o);
// The scope is gone (its guard was killed while no child held it): the next call starts one.
void forget_spawner_scope();

} // namespace cgrun::detail
