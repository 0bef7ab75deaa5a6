#pragma once

// Whether systemd delegated a cgroup (delegation.cpp): what auto reads to prefer the cgroup
// method inside a Delegate=yes unit.

#include <optional>
#include <string>

namespace cgrun::detail {

// The caller's default parent (default_parent()) and the xattr that marks it delegated.
struct delegation {
    std::string cgroup; // "/system.slice/foo.service"
    std::string marker; // "trusted.delegate" or "user.delegate"
};

// The default parent of the cgroup method when systemd marked it delegated, else nullopt
// (also when it cannot be read: then auto keeps its usual order).
std::optional<delegation> delegated_default_parent();

// "/a/b is delegated to this process (trusted.delegate, set by systemd for Delegate=yes)":
// why auto took the cgroup method first.
std::string describe(const delegation& d);

} // namespace cgrun::detail
