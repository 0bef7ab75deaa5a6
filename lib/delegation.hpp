#pragma once

// Whether systemd delegated a cgroup (delegation.cpp): what auto reads to prefer the cgroup
// method inside a Delegate=yes unit.

#include <optional>
#include <string>
#include <string_view>

namespace cgrun::detail {

// The caller's default parent (default_parent()) and the xattr that marks it delegated.
struct delegation {
    std::string cgroup; // the default parent: "/system.slice/foo.service/worker"
    std::string root;   // the marked cgroup it is in or below: "/system.slice/foo.service"
    std::string marker; // "trusted.delegate" or "user.delegate"
};

// The default parent of the cgroup method when systemd marked it delegated, else nullopt
// (also when it cannot be read: then auto keeps its usual order).
// Read once per process, like the default parent, and looked up again with it
// (forget_default_parent() calls forget_delegation()).
std::optional<delegation> delegated_default_parent();
void forget_delegation();

// A cgroup systemd made for a unit ("foo.service"): what a delegated subtree below it is not
// likely named.
bool is_unit_name(std::string_view name);

// "/a/b is delegated to this process (trusted.delegate, set by systemd for Delegate=yes)":
// why auto took the cgroup method first.
std::string describe(const delegation& d);

} // namespace cgrun::detail
