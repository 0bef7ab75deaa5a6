// Settling options::run_as and options::nice in the spawner (user database lookups included).

#include "identity.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

namespace cgrun::detail {

namespace {

std::string describe(const identity& id)
{
    std::string s;
    if (id.uid)
        s = "uid " + std::to_string(*id.uid);
    if (id.gid)
        s += (s.empty() ? "gid " : " gid ") + std::to_string(*id.gid);
    return s;
}

// The groups `name` is a member of, with `gid` first (as initgroups(3) sets them).
result<std::vector<gid_t>> groups_of(const char* name, gid_t gid)
{
    std::vector<gid_t> groups(32);
    for (;;) {
        int n = static_cast<int>(groups.size());
        if (::getgrouplist(name, gid, groups.data(), &n) >= 0) {
            groups.resize(static_cast<std::size_t>(n));
            return groups;
        }
        if (n <= static_cast<int>(groups.size())) // NSS failure, not a short buffer
            return error::make(errc::invalid_argument, std::string("getgrouplist ") + name + " failed");
        groups.resize(static_cast<std::size_t>(n));
    }
}

} // namespace

result<void> settle_identity(options& opts)
{
    if (opts.nice && (*opts.nice < -20 || *opts.nice > 19))
        return error::make(errc::invalid_argument, "nice value " + std::to_string(*opts.nice) + " is not in -20..19");
    identity& id = opts.run_as;
    if (!id.uid && !id.gid && !id.groups)
        return {};
    if (::geteuid() != 0) {
        // Without root the only identity to be had is the own one: then there is nothing to do.
        if ((id.uid && *id.uid != ::geteuid()) || (id.gid && *id.gid != ::getegid()) || id.groups) {
            std::string who = describe(id);
            return error::make(errc::invalid_argument, "running the command as " +
                                                           (who.empty() ? "other groups" : who) + " needs root");
        }
        id = {};
        return {};
    }
    if (!id.uid) {
        // A group alone: no user to take supplementary groups from, so none (not root's).
        if (!id.groups)
            id.groups.emplace();
        return {};
    }
    // getpwuid_r: spawn() may run in several threads at once.
    struct passwd entry {};
    struct passwd* pw = nullptr;
    std::vector<char> buf(1024);
    int err;
    while ((err = ::getpwuid_r(*id.uid, &entry, buf.data(), buf.size(), &pw)) == ERANGE && buf.size() < (1U << 20))
        buf.resize(buf.size() * 2);
    if (!pw) {
        if (err != 0 && err != ENOENT && err != ESRCH)
            return error::from_errno(err, "getpwuid_r " + std::to_string(*id.uid));
        if (!id.gid)
            return error::make(errc::invalid_argument,
                               "uid " + std::to_string(*id.uid) + " has no passwd entry: give its group too");
        if (!id.groups)
            id.groups.emplace();
        return {};
    }
    if (!id.gid)
        id.gid = pw->pw_gid;
    if (!id.groups) {
        auto g = groups_of(pw->pw_name, *id.gid);
        if (!g)
            return g.error();
        id.groups = std::move(*g);
    }
    return {};
}

} // namespace cgrun::detail
