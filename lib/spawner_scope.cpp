// The per-spawner delegated scope: one transient Delegate=yes scope per spawning process,
// held by the spawner-death guard in its sub-leaf "guard", under which the cgroup method
// puts its leaves.

#include "spawner_scope.hpp"

#include "cgroup_fs.hpp"
#include "guard.hpp"
#include "hierarchy.hpp"
#include "systemd_scope.hpp"

#include <unistd.h>

#include <mutex>

namespace cgrun::detail {

namespace {

struct cached {
    std::mutex mutex;
    pid_t owner = -1; // the process the scope belongs to (a fork starts its own)
    spawner_scope_info info;
};

cached& cache()
{
    static cached* c = new cached; // never destroyed: spawns may run while statics go
    return *c;
}

result<spawner_scope_info> start(const options& o, int mount_fd)
{
    // A scope needs a process to start with, and should live as long as the spawner: the
    // guard is both. It exits after the spawner did (having killed what was left), the scope
    // empties, and systemd stops it and removes its cgroup, sub-leaves included.
    auto guard = guard_pid();
    if (!guard)
        return guard.error();
    auto mgr = connect_manager(o.scope.bus, o.scope.bus_timeout);
    if (!mgr)
        return mgr.error();
    scope_request sr;
    sr.unit = "cgrun-" + std::to_string(::getpid()) + ".scope";
    sr.description = "cgrun: the children of process " + std::to_string(::getpid());
    sr.slice = o.scope.slice;
    sr.pids = {*guard};
    sr.delegate = true;
    if (auto s = start_scope(**mgr, sr, o.scope.bus_timeout); !s)
        return s.error();
    auto fail = [&](const std::string& why) {
        stop_scope(**mgr, sr.unit, o.scope.bus_timeout); // kills the guard: the next spawn starts one
        return error::make(errc::scope_failed, "scope " + sr.unit + ": " + why);
    };
    // Where it lives, as our cgroup namespace sees it (as for the scope method).
    auto path = process_cgroup(*guard);
    if (!path || !path->ends_with("/" + sr.unit))
        return fail("the guard is in " + (path ? *path : std::string("no cgroup")));
    // The kernel's "no internal processes" rule: controllers can be enabled for the leaves
    // (limits) only while the scope's own cgroup holds no process.
    auto leaf = cgroup_dir::create(mount_fd, *path, "guard");
    if (!leaf)
        return fail(leaf.error().message());
    if (auto w = leaf->write("cgroup.procs", std::to_string(*guard)); !w)
        return fail("move the guard to " + leaf->path() + ": " + w.error().message());
    leaf->release(); // systemd removes it with the scope
    return spawner_scope_info{sr.unit, *path};
}

} // namespace

result<spawner_scope_info> spawner_scope(const options& o)
{
    auto root = cgroup2();
    if (!root)
        return root.error();
    auto& c = cache();
    std::lock_guard lock(c.mutex);
    if (c.owner == ::getpid())
        return c.info;
    auto s = start(o, root->fd);
    if (!s)
        return s.error();
    c.owner = ::getpid();
    c.info = *s;
    return c.info;
}

void forget_spawner_scope()
{
    auto& c = cache();
    std::lock_guard lock(c.mutex);
    c.owner = -1;
}

} // namespace cgrun::detail
