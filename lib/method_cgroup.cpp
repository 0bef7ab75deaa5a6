// The cgroup method: a leaf cgroup per child under a delegated parent, and the tree
// operations of any tree held by one cgroup (the scope method's too).

#include "cgroup_path.hpp"
#include "cgroup_tree.hpp"
#include "hierarchy.hpp"
#include "setup.hpp"
#include "spawner_scope.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <set>

namespace cgrun::detail {

using namespace std::chrono_literals;

namespace {
constexpr const char* kept_xattr = "user.cgrun.kept";
}

// ---- the tree ---------------------------------------------------------------------------

result<bool> cgroup_tree::alive()
{
    return cg_.populated();
}

void cgroup_tree::signal(int sig)
{
    (void)cg_.signal_all(sig);
}

std::string cgroup_tree::mechanism() const
{
    return cgroup_kill_disabled() ? "freeze-kill" : "cgroup.kill";
}

result<std::string> cgroup_tree::kill()
{
    auto mech = cg_.kill_all();
    if (!mech)
        return mech.error();
    return std::string(*mech == kill_mechanism::cgroup_kill ? "cgroup.kill" : "freeze-kill");
}

result<bool> cgroup_tree::wait_empty(deadline_t deadline)
{
    return cg_.wait_empty(deadline);
}

int cgroup_tree::remaining()
{
    if (!cg_.valid())
        return 0;
    if (auto pop = cg_.populated(); pop && !*pop)
        return 0;
    return static_cast<int>(cg_.pids().size());
}

std::vector<pid_t> cgroup_tree::members()
{
    if (!cg_.valid())
        return {};
    return cg_.pids();
}

void cgroup_tree::sample(usage& u)
{
    // What an empty cgroup shows does not change any more: one sample of it is the last.
    if (!cg_.valid() || sampled_empty_)
        return;
    auto pop = cg_.populated();
    sampled_empty_ = pop && !*pop;
    auto c = cg_.cpu();
    if (c.user_ms + c.system_ms >= u.cpu.user_ms + u.cpu.system_ms)
        u.cpu = c;
    if (auto m = cg_.memory_peak())
        u.memory_peak = std::max(u.memory_peak.value_or(0), *m);
    u.oom = u.oom || cg_.oom_killed();
}

std::optional<std::chrono::microseconds> cgroup_tree::cpu_usage()
{
    if (!cg_.valid())
        return std::nullopt;
    return cg_.cpu_usage();
}

unique_fd cgroup_tree::open_memory_events()
{
    return cg_.open_memory_events();
}

result<void> cgroup_tree::finish()
{
    if (!cg_.valid())
        return {};
    return cg_.remove(cgroup2()->fd);
}

result<std::optional<std::string>> cgroup_tree::hand_over()
{
    result<void> marked;
    if (cg_.valid())
        marked = sys::set_xattr(cg_.fd(), kept_xattr, "1"); // user xattrs on cgroup2: Linux 5.7
    auto path = cg_.path();
    cg_.release();
    if (!marked)
        return error{marked.error().code, "kept orphans in " + path + " are not marked kept (" +
                                              marked.error().message() + "): a later run's sweep may kill them"};
    return std::optional<std::string>();
}

guard_target cgroup_tree::guard() const
{
    guard_target g;
    g.cgroup_fd = cg_.fd();
    g.leaf = cg_.path().substr(cg_.path().rfind('/') + 1);
    return g;
}

// ---- placement --------------------------------------------------------------------------

namespace {

std::mutex swept_mutex;
std::set<std::string> swept_parents;

// Removes leaves of crashed earlier runs ("cgrun-<pid>-<n>" whose pid is gone), once per
// parent per process: a crashed spawner cannot clean up after itself.
void sweep_stale(int mount_fd, int parent_fd, const std::string& parent)
{
    {
        std::lock_guard l(swept_mutex);
        if (!swept_parents.insert(parent).second)
            return;
    }
    auto subs = sys::list_subdirs(parent_fd, parent);
    if (!subs)
        return;
    for (auto& name : *subs) {
        int pid = 0;
        unsigned long n = 0;
        if (std::sscanf(name.c_str(), "cgrun-%d-%lu", &pid, &n) != 2 || pid == ::getpid())
            continue;
        if (sys::kill_pid(pid, 0) != -ESRCH)
            continue;
        auto cg = cgroup_dir::open(mount_fd, (parent == "/" ? "" : parent) + "/" + name);
        if (!cg)
            continue;
        if (sys::has_xattr(cg->fd(), kept_xattr)) {
            // Orphans its run handed to the caller (keep_orphans): theirs, not stale.
            if (auto pop = cg->populated(); pop && !*pop)
                (void)cg->remove(mount_fd);
            continue;
        }
        if (cg->kill_all() && cg->wait_empty(sys::now() + 1s).has_value())
            (void)cg->remove(mount_fd);
    }
}

// A leaf being set up: removed again unless handed on to its tree.
class leaf_guard {
public:
    leaf_guard(int mount_fd, cgroup_dir cg) : mount_fd_(mount_fd), cg_(std::move(cg)) {}
    leaf_guard(const leaf_guard&) = delete;
    leaf_guard& operator=(const leaf_guard&) = delete;
    ~leaf_guard()
    {
        if (cg_.valid())
            (void)cg_.remove(mount_fd_);
    }
    cgroup_dir& operator*() { return cg_; }
    cgroup_dir* operator->() { return &cg_; }
    cgroup_dir hand_on() { return std::move(cg_); }

private:
    int mount_fd_;
    cgroup_dir cg_;
};

error unavailable(const limit_setting& l, const std::string& where)
{
    return error::make(errc::controller_unavailable, l.given() + " needs the " + l.controller + " controller (" +
                                                         l.file + "), which is not available in " + where);
}

// Makes the limits' controllers available to the leaf and writes the limits into it.
result<void> apply_limits(cgroup_dir& leaf, int parent_fd, const std::string& parent,
                          const std::vector<limit_setting>& limits)
{
    if (limits.empty())
        return {};
    auto offered = controllers(parent_fd, parent);
    for (auto& l : limits) {
        if (!offered || std::find(offered->begin(), offered->end(), l.controller) == offered->end())
            return unavailable(l, parent);
        if (!leaf.has_file(l.file))
            if (auto w = enable_controller(parent_fd, parent, l.controller); !w) {
                std::string hint;
                if (w.error().code == std::errc::device_or_resource_busy)
                    hint = "; " + parent + " holds processes: run `cgrun --setup-cgroup` (setup_cgroup()) "
                                           "once to move them to a leaf and enable its controllers";
                return error::make(errc::controller_unavailable, l.given() + ": " + w.error().message() + hint);
            }
        // memory.swap.max is missing without swap accounting even where memory is enabled.
        if (!leaf.has_file(l.file))
            return unavailable(l, leaf.path());
        if (auto w = leaf.write(l.file, l.file_value); !w)
            return error::make(errc::controller_unavailable, l.given() + ": " + w.error().message());
    }
    return {};
}

} // namespace

result<placed> place_in_cgroup(const place_request& r)
{
    auto& o = r.opts;
    auto root = cgroup2();
    if (!root)
        return root.error();
    std::string parent = o.cgroup.parent;
    std::optional<std::string> unit;
    // The delegated scope and the default parent are remembered per process.
    auto look_up = [&]() -> result<void> {
        if (o.cgroup.delegated_scope) {
            auto s = spawner_scope(o);
            if (!s)
                return s.error();
            parent = s->cgroup;
            unit = s->unit;
        } else {
            auto own = default_parent();
            if (!own)
                return own.error();
            parent = *own;
        }
        return {};
    };
    bool remembered = o.cgroup.delegated_scope || parent.empty();
    if (o.cgroup.delegated_scope) {
        if (!parent.empty())
            return error::make(errc::invalid_argument, "a cgroup parent and the delegated scope exclude each other");
        if (!o.spawner_guard)
            return error::make(errc::invalid_argument, "the delegated scope is held by the spawner-death guard, "
                                                       "which is turned off (spawner_guard)");
    } else if (!parent.empty() && !relative_cgroup_path(parent)) {
        return error::make(errc::invalid_argument, "cgroup parent " + parent);
    }
    if (remembered)
        if (auto l = look_up(); !l)
            return l.error();

    static std::atomic<unsigned long> counter{0};
    std::string name = "cgrun-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    unique_fd parent_fd;
    result<cgroup_dir> made = error::make(errc::cgroup_not_delegated, "no cgroup parent");
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (parent.empty() || parent[0] != '/')
            parent = "/" + parent;
        auto fd = open_cgroup(root->fd, parent);
        made = fd ? cgroup_dir::create_in(fd->get(), parent, name)
                  : result<cgroup_dir>(error::make(errc::cgroup_not_delegated, fd.error().message()));
        if (made) {
            parent_fd = std::move(*fd);
            break;
        }
        // What was remembered may be gone: the delegated scope when its guard was killed
        // while no child held it, the default parent when we were moved and it was removed
        // (or is no longer ours). Look once more.
        if (!remembered || attempt > 0)
            break;
        std::string was = parent;
        if (o.cgroup.delegated_scope)
            forget_spawner_scope();
        else
            forget_default_parent();
        if (auto l = look_up(); !l)
            return l.error();
        // (A new delegated scope has the old one's name and path.)
        if (!o.cgroup.delegated_scope && (parent == was || "/" + parent == was))
            break;
    }
    if (!made) {
        auto& e = made.error();
        if (e.code == std::errc::permission_denied || e.code == std::errc::read_only_file_system ||
            e.code == std::errc::operation_not_permitted || e.code == std::errc::no_such_file_or_directory)
            return error::make(errc::cgroup_not_delegated, e.message());
        return e;
    }
    sweep_stale(root->fd, parent_fd.get(), parent);
    leaf_guard leaf(root->fd, std::move(*made));
    if (auto l = apply_limits(*leaf, parent_fd.get(), parent, r.limits); !l)
        return l.error();

    auto req = launch_request(o);
    req.cgroup_fd = leaf->fd();
    auto sp = start_process(std::move(req));
    if (!sp)
        return sp.error();
    if (!sp->in_cgroup) {
        // Moving a process costs a cgroup_threadgroup_rwsem write lock (an RCU grace period
        // since 6.0): that is why CLONE_INTO_CGROUP is tried first. The held child dies with
        // `sp` if this fails.
        if (auto w = leaf->write("cgroup.procs", std::to_string(sp->pid)); !w)
            return error::make(errc::cgroup_not_delegated, w.error().message());
    }
    placed p;
    p.unit = unit; // the delegated scope that owns the leaf, if any
    p.cgroup = leaf->path();
    p.process = std::move(*sp);
    p.held = std::make_unique<cgroup_tree>(leaf.hand_on());
    return p;
}

} // namespace cgrun::detail
