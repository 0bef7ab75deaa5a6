// Whether systemd delegated the caller's own cgroup to it, read from the xattr systemd sets.

#include "delegation.hpp"

#include "cgroup_fs.hpp"
#include "hierarchy.hpp"
#include "setup.hpp"
#include "sys.hpp"

#include <array>

namespace cgrun::detail {

namespace {

// systemd's system manager sets both on the cgroup of every unit with Delegate=yes, and
// removes them when delegation is off (src/core/cgroup.c, cgroup_delegate_xattr_apply();
// checked on 252.39: a Delegate=yes service's cgroup carries trusted.delegate=1 and
// user.delegate=1). trusted.* reads as absent without CAP_SYS_ADMIN, user.* needs Linux 5.7:
// so both, in systemd's own order (cg_is_delegated()). A user manager sets neither; its
// delegated units are not recognised here, and auto keeps its usual order there.
constexpr std::array<const char*, 2> markers{"trusted.delegate", "user.delegate"};

// systemd reads the value with parse_boolean().
bool truthy(const std::string& v)
{
    return v == "1" || v == "yes" || v == "y" || v == "true" || v == "t" || v == "on";
}

} // namespace

std::optional<delegation> delegated_default_parent()
{
    auto root = cgroup2();
    if (!root)
        return std::nullopt;
    auto parent = default_parent();
    if (!parent)
        return std::nullopt;
    auto fd = open_cgroup(root->fd, *parent);
    if (!fd)
        return std::nullopt;
    // The marker says the cgroup is delegated to the unit's user, whom systemd made its
    // owner: another (non-root) user in it, e.g. after setuid, is not the delegatee.
    if (!sys::root_or_owner(fd->get()))
        return std::nullopt;
    for (const char* m : markers)
        if (auto v = sys::get_xattr(fd->get(), m); v && truthy(*v))
            return delegation{*parent, m};
    return std::nullopt;
}

std::string describe(const delegation& d)
{
    return d.cgroup + " is delegated to this process (" + d.marker + ", set by systemd for Delegate=yes)";
}

} // namespace cgrun::detail
