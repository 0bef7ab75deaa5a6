// The setup step for limits in a delegated cgroup: its processes move into a leaf, its
// controllers are enabled for children (the kernel's "no internal processes" rule).

#include "cgroup_fs.hpp"
#include "cgroup_path.hpp"
#include "delegation.hpp"
#include "hierarchy.hpp"
#include "sys.hpp"

#include <cgrun/host.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

namespace cgrun {

namespace detail {

const char* const setup_xattr = "user.cgrun.setup";

namespace {

// The default parent, looked up once per process: /proc/self/cgroup alone costs more than the
// rest of a spawn's cgroup bookkeeping. Looked up again after a fork, after our own setup
// step, and when a leaf cannot be made in it (forget_default_parent()). A setup step run by
// another process changes nothing: it moves us into a leaf of the parent we found already.
struct parent_cache {
    std::mutex mutex;
    pid_t pid = 0;
    std::string path;
};

parent_cache& cache()
{
    static parent_cache c;
    return c;
}

result<std::string> look_up_default_parent()
{
    auto own = own_cgroup();
    if (!own)
        return own.error();
    auto root = cgroup2();
    if (!root || *own == "/")
        return *own;
    auto fd = open_cgroup(root->fd, *own);
    if (fd && sys::has_xattr(fd->get(), setup_xattr)) {
        auto slash = own->rfind('/');
        return slash == 0 ? std::string("/") : own->substr(0, slash);
    }
    return *own;
}

} // namespace

result<std::string> default_parent()
{
    auto& c = cache();
    std::lock_guard l(c.mutex);
    pid_t self = ::getpid();
    if (c.pid == self)
        return c.path;
    auto p = look_up_default_parent();
    if (p) {
        c.pid = self;
        c.path = *p;
    }
    return p;
}

void forget_default_parent()
{
    {
        auto& c = cache();
        std::lock_guard l(c.mutex);
        c.pid = 0;
    }
    forget_delegation();
}

namespace {

std::vector<int> pids_in(int dirfd)
{
    auto text = sys::read_file(dirfd, "cgroup.procs");
    return text ? parse_pids(*text) : std::vector<int>{};
}

std::string join(const std::string& parent, const std::string& name)
{
    return (parent == "/" ? "" : parent) + "/" + name;
}

} // namespace

// What probe_host reports: would the setup step move processes or enable controllers?
std::optional<host_info::setup_step> setup_needed(const std::string& parent, const std::string& leaf)
{
    auto root = cgroup2();
    if (!root)
        return std::nullopt;
    auto fd = open_cgroup(root->fd, parent);
    if (!fd)
        return std::nullopt;
    auto offered = controllers(fd->get(), parent);
    auto enabled = sys::read_file(fd->get(), "cgroup.subtree_control");
    if (!offered || !enabled)
        return std::nullopt;
    host_info::setup_step s;
    s.from = parent;
    s.to = join(parent, leaf);
    auto on = split_words(*enabled);
    for (auto& c : *offered)
        if (std::find(on.begin(), on.end(), c) == on.end())
            s.controllers.push_back(c);
    s.processes = static_cast<int>(pids_in(fd->get()).size());
    if (s.controllers.empty() || s.processes == 0 || !sys::exists_at(fd->get(), "cgroup.type"))
        return std::nullopt; // nothing to enable, nothing in the way, or the real root (exempt)
    return s;
}

} // namespace detail

result<setup_result> setup_cgroup(const setup_options& o)
{
    auto root = detail::cgroup2();
    if (!root)
        return root.error();
    if (!detail::valid_cgroup_name(o.leaf))
        return error::make(errc::invalid_argument, "leaf name " + o.leaf);
    std::string target = o.cgroup;
    if (target.empty()) {
        auto p = detail::default_parent();
        if (!p)
            return p.error();
        target = *p;
    } else if (!detail::relative_cgroup_path(target)) {
        return error::make(errc::invalid_argument, "cgroup path " + target);
    }
    if (target[0] != '/')
        target = "/" + target;
    auto fd = detail::open_cgroup(root->fd, target);
    if (!fd)
        return error::make(errc::cgroup_not_delegated, fd.error().message());
    // The real root of the hierarchy (no cgroup.type; a cgroup namespace's root has one) is
    // exempt from the rule and holds the whole host: never move its processes.
    auto type = sys::read_file(fd->get(), "cgroup.type");
    if (!type)
        return error::make(errc::cgroup_not_delegated,
                           target + " is the root of the cgroup hierarchy: it needs no setup step "
                                    "(its controllers can be enabled while it holds processes)");
    // Threaded cgroups cannot hold domain controllers this way.
    if (type->rfind("domain", 0) != 0)
        return error::make(errc::cgroup_not_delegated, target + " is a " + type->substr(0, type->find('\n')) +
                                                           " cgroup; the setup step needs a domain cgroup");

    setup_result r;
    r.cgroup = target;
    r.leaf = detail::join(target, o.leaf);
    if (auto m = sys::make_dir(fd->get(), o.leaf, 0755); !m && m.error().code != std::errc::file_exists)
        return error::make(errc::cgroup_not_delegated, "create " + r.leaf + ": " + m.error().message());
    auto leaf = sys::open_dir(fd->get(), o.leaf);
    if (!leaf)
        return error::make(errc::cgroup_not_delegated, "open " + r.leaf + ": " + leaf.error().message());
    // The mark lets the cgroup method, run from inside the leaf, put its leaves next to it.
    if (auto m = sys::set_xattr(leaf->get(), detail::setup_xattr, "1"); !m)
        r.warnings.push_back("could not mark " + r.leaf + " (" + m.error().message() +
                             "): the cgroup method will not find " + r.cgroup +
                             " by itself; pass --cgroup-parent " + r.cgroup);

    // We may move ourselves into the leaf: our default parent is looked up again afterwards.
    struct forget_parent {
        ~forget_parent() { detail::forget_default_parent(); }
    } forget;
    // Processes may fork while they are moved: repeat until none is left (bounded).
    for (int round = 0; round < 20; ++round) {
        auto pids = detail::pids_in(fd->get());
        if (pids.empty())
            break;
        for (int pid : pids) {
            auto w = sys::write_file(leaf->get(), "cgroup.procs", std::to_string(pid));
            if (w) {
                r.moved.push_back(pid);
                continue;
            }
            if (w.error().code == std::errc::no_such_process)
                continue; // exited meanwhile
            return error::make(errc::cgroup_not_delegated,
                               "move process " + std::to_string(pid) + " from " + target + " to " + r.leaf + ": " +
                                   w.error().message());
        }
    }
    if (!detail::pids_in(fd->get()).empty())
        return error::make(errc::cgroup_not_delegated, target + " still holds processes after moving them to " + r.leaf);

    auto offered = detail::controllers(fd->get(), target);
    if (!offered)
        return error::make(errc::cgroup_not_delegated, offered.error().message());
    auto enabled_text = sys::read_file(fd->get(), "cgroup.subtree_control");
    auto enabled = enabled_text ? detail::split_words(*enabled_text) : std::vector<std::string>{};
    for (auto& c : *offered) {
        if (std::find(enabled.begin(), enabled.end(), c) != enabled.end())
            continue;
        if (auto e = detail::enable_controller(fd->get(), target, c); !e)
            return error::make(errc::controller_unavailable, e.error().message());
        r.enabled.push_back(c);
        enabled.push_back(c);
    }
    r.controllers = enabled;
    return r;
}

} // namespace cgrun
