// Whether systemd delegated the caller's own cgroup to it, read from the xattr systemd sets.

#include "delegation.hpp"

#include "cgroup_fs.hpp"
#include "hierarchy.hpp"
#include "setup.hpp"
#include "sys.hpp"

#include <unistd.h>

#include <array>
#include <mutex>

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

bool is_unit_name(std::string_view name)
{
    for (std::string_view suffix : {".service", ".scope", ".slice", ".socket", ".mount", ".swap"})
        if (name.size() > suffix.size() && name.ends_with(suffix))
            return true;
    return false;
}

namespace {

// Read once per process with the default parent (systemd sets the marks when it creates a
// unit's cgroup), and again after forget_default_parent().
struct delegation_cache {
    std::mutex mutex;
    pid_t pid = 0;
    std::optional<delegation> value;
};

delegation_cache& cache()
{
    static delegation_cache c;
    return c;
}

std::optional<delegation> look_up_delegation();

} // namespace

std::optional<delegation> delegated_default_parent()
{
    auto& c = cache();
    std::lock_guard l(c.mutex);
    pid_t self = ::getpid();
    if (c.pid != self) {
        c.value = look_up_delegation();
        c.pid = self;
    }
    return c.value;
}

void forget_delegation()
{
    auto& c = cache();
    std::lock_guard l(c.mutex);
    c.pid = 0;
}

namespace {

std::optional<delegation> look_up_delegation()
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
    // systemd marks only the unit's cgroup, and a service is told to move itself into a
    // sub-leaf of it ("no internal processes"): look up to the nearest unit, and no further
    // (a scope of a user manager is not delegated although user@.service above it is).
    std::string at = *parent;
    for (unique_fd dir = std::move(*fd); dir;) {
        for (const char* m : markers)
            if (auto v = sys::get_xattr(dir.get(), m); v && truthy(*v))
                return delegation{*parent, at, m};
        auto slash = at.rfind('/');
        if (at == "/" || slash == std::string::npos || is_unit_name(at.substr(slash + 1)))
            break;
        at = slash == 0 ? "/" : at.substr(0, slash);
        auto up = sys::open_dir(dir.get(), "..");
        dir = up ? std::move(*up) : unique_fd{};
    }
    return std::nullopt;
}

} // namespace

std::string describe(const delegation& d)
{
    return (d.cgroup == d.root ? d.cgroup : d.cgroup + ", in " + d.root + ",") + " is delegated to this process (" +
           d.marker + ", set by systemd for Delegate=yes)";
}

} // namespace cgrun::detail
