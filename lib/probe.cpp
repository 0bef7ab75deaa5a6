// What the host offers (cgrun --check): cgroup2, a delegated parent, CLONE_INTO_CGROUP, systemd.

#include "cgroup_fs.hpp"
#include "cgroup_path.hpp"
#include "delegation.hpp"
#include "hierarchy.hpp"
#include "setup.hpp"
#include "spawn.hpp"
#include "sys.hpp"
#include "systemd_scope.hpp"

#include <cgrun/host.hpp>

#include <unistd.h>


namespace cgrun {

host_info probe_host(const options& opts)
{
    host_info h;
    auto root = detail::cgroup2();
    if (root)
        h.cgroup2_mount = root->mount;
    if (auto own = detail::own_cgroup())
        h.own_cgroup = *own;

    if (root) {
        std::string parent = opts.cgroup.parent;
        if (parent.empty()) {
            if (auto p = detail::default_parent())
                parent = *p;
            if (auto d = detail::delegated_default_parent()) {
                h.delegated = true;
                h.delegation_marker = d->marker;
            }
        }
        if (parent.empty())
            h.delegated_parent_error = "own cgroup unknown";
        else {
            auto leaf = detail::cgroup_dir::create(root->fd, parent, "cgrun-probe-" + std::to_string(::getpid()));
            if (!leaf) {
                h.delegated_parent_error = leaf.error().message();
            } else {
                h.delegated_parent = parent;
                h.setup_needed = detail::setup_needed(parent, "init");
                h.cgroup_kill = leaf->has_file("cgroup.kill");
                if (auto pfd = detail::open_cgroup(root->fd, parent))
                    if (auto c = detail::controllers(pfd->get(), parent))
                        h.controllers = std::move(*c);
                detail::spawn_request req;
                req.argv = {"/bin/true"};
                req.stdio = {stdio_spec::null(), stdio_spec::null(), stdio_spec::null()};
                req.cgroup_fd = leaf->fd();
                auto sp = detail::start_process(std::move(req));
                if (!sp) {
                    h.clone_into_cgroup_error = sp.error().message();
                } else {
                    h.clone_into_cgroup = sp->in_cgroup;
                    if (!sp->in_cgroup) {
                        h.clone_into_cgroup_error = "clone3(CLONE_INTO_CGROUP) refused";
                        (void)leaf->write("cgroup.procs", std::to_string(sp->pid));
                    }
                    (void)detail::release(*sp);
                    (void)sys::poll_one(sp->pidfd.get(), POLLIN, std::chrono::seconds(5));
                    (void)sys::wait_pidfd(sp->pidfd.get(), false);
                }
                (void)leaf->wait_empty(sys::now() + std::chrono::seconds(1));
                (void)leaf->remove(root->fd);
            }
        }
    }

    auto mgr = detail::connect_manager(opts.scope.bus, opts.scope.bus_timeout);
    if (mgr)
        h.systemd_reachable = true;
    else
        h.systemd_error = mgr.error().message();
    return h;
}

} // namespace cgrun
