// The scope method: each child in a transient systemd scope of its own (the D-Bus
// conversation itself is in systemd_scope.cpp), killed and measured through its cgroup.

#include "cgroup_path.hpp"
#include "cgroup_tree.hpp"
#include "hierarchy.hpp"
#include "systemd_scope.hpp"
#include "unit_name.hpp"

#include <algorithm>

namespace cgrun::detail {

using namespace std::chrono_literals;

namespace {

class scope_tree final : public cgroup_tree {
public:
    scope_tree(cgroup_dir cg, std::shared_ptr<scope_manager> m, std::string unit, sentinel keeper)
        : cgroup_tree(std::move(cg)), manager_(std::move(m)), unit_(std::move(unit)), keeper_(std::move(keeper))
    {
    }

    void unhold() override { stop_sentinel(keeper_); }

    std::vector<pid_t> members() override
    {
        auto pids = cgroup_tree::members();
        std::erase(pids, keeper_.pid);
        return pids;
    }

    // systemd removes the cgroup of an emptied scope by itself: tell it the scope is done,
    // and wait until the cgroup is gone, so nothing we created is left when we return.
    result<void> finish() override
    {
        if (!cg_.valid())
            return {};
        unhold();
        finish_scope(*manager_, unit_);
        auto rel = relative_cgroup_path(cg_.path());
        auto until = sys::now() + 500ms;
        // systemd needs well under a millisecond when idle: poll finely at first.
        for (auto step = 20us; sys::now() < until; step = std::min<std::chrono::microseconds>(step + step / 4, 1ms)) {
            if (!sys::exists_at(cgroup2()->fd, *rel))
                break;
            sys::sleep_for(step);
        }
        cg_.release();
        return {};
    }

    // systemd collects the emptied scope; its cgroup is not ours to remove.
    [[nodiscard]] guard_target guard() const override
    {
        guard_target g;
        g.cgroup_fd = cg_.fd();
        return g;
    }

    void abandon() noexcept override
    {
        cgroup_tree::abandon();
        // The sentinel stays in the scope; it exits when we do (its pipe closes) or now.
        stop_sentinel(keeper_);
    }

private:
    std::shared_ptr<scope_manager> manager_;
    std::string unit_;
    sentinel keeper_; // with the memory controller: see start_sentinel()
};

// A started scope: stopped again unless handed on.
struct scope_guard {
    scope_manager& manager;
    const std::string& unit;
    std::chrono::milliseconds timeout;
    bool armed = true;
    ~scope_guard()
    {
        if (armed)
            stop_scope(manager, unit, timeout);
    }
};

std::string describe(const std::vector<std::string>& argv)
{
    std::string d = "cgrun:";
    for (auto& a : argv) {
        d += ' ';
        d += a;
        if (d.size() > 200) {
            d.resize(200);
            d += "...";
            break;
        }
    }
    return d;
}

bool memory_controller_available(int mount_fd)
{
    static const bool available = [mount_fd] {
        auto c = controllers(mount_fd, "/");
        return c && std::find(c->begin(), c->end(), "memory") != c->end();
    }();
    return available;
}

scope_request make_scope_request(const options& o, const std::string& unit, const std::vector<limit_setting>& limits)
{
    scope_request sr;
    sr.unit = unit;
    sr.description = o.scope.description.empty() ? describe(o.argv) : o.scope.description;
    sr.slice = o.scope.slice;
    if (o.timeout && o.timeout->count() > 0)
        sr.runtime_max_usec =
            static_cast<std::uint64_t>((*o.timeout + o.kill.grace + o.scope.backstop_margin).count()) * 1000;
    // If we die, systemd stops the scope itself: KillSignal, then SIGKILL after this long.
    sr.kill_signal = o.kill.grace.count() > 0 ? o.kill.signal : SIGKILL;
    sr.timeout_stop_usec = static_cast<std::uint64_t>(std::max(o.kill.grace, 100ms).count()) * 1000;
    for (auto& l : limits)
        sr.properties.push_back(l.property);
    return sr;
}

} // namespace

result<placed> place_in_scope(const place_request& r)
{
    auto& o = r.opts;
    auto root = cgroup2();
    if (!root)
        return error::make(errc::cgroup2_unavailable,
                           "no cgroup2 mount to kill a scope through: " + root.error().message());
    std::string unit;
    if (!o.scope.unit.empty()) {
        auto v = validate_scope_name(o.scope.unit);
        if (!v)
            return v.error();
        unit = *v;
    } else {
        unit = generate_scope_name(o.argv[0]);
    }
    auto mgr = connect_manager(o.scope.bus, o.scope.bus_timeout);
    if (!mgr)
        return mgr.error();

    // Held before exec until the scope owns it; dies with `sp` on any early return.
    auto req = launch_request(o);
    req.hold = true;
    auto sp = start_process(std::move(req));
    if (!sp)
        return sp.error();

    auto sr = make_scope_request(o, unit, r.limits);
    sr.pids = {sp->pid};
    // systemd removes a scope's cgroup the moment it is empty, before we could read its
    // final memory.peak and memory.events: where there is a memory controller, a sentinel
    // keeps it populated until the main process's exit has been sampled.
    std::optional<result<sentinel>> keeper;
    if (memory_controller_available(root->fd)) {
        keeper.emplace(start_sentinel());
        if (!*keeper)
            return keeper->error();
        sr.pids.push_back((*keeper)->pid);
    }
    // On failure the scope may exist with our (then dead) child: it empties and systemd
    // collects it, so no stop is needed.
    if (auto started = start_scope(**mgr, sr, o.scope.bus_timeout); !started)
        return started.error();
    scope_guard stop_unless_handed_on{**mgr, unit, o.scope.bus_timeout};

    // Where the scope lives, as our cgroup namespace sees it: the held child is in it now.
    // This is the unit's ControlGroup property mapped onto our mount, without a round trip
    // and without assuming that systemd shares our cgroup namespace.
    auto cgpath = process_cgroup(sp->pid);
    if (!cgpath || !cgpath->ends_with("/" + unit))
        return error::make(errc::scope_failed,
                           "scope " + unit + ": the child is in " + (cgpath ? *cgpath : std::string("no cgroup")));
    auto cg = cgroup_dir::open(root->fd, *cgpath);
    if (!cg)
        return error::make(errc::scope_failed, "scope " + unit + ": " + cg.error().message());
    // systemd accepts limit properties even where the controller is missing and then
    // silently does not enforce them: check that the scope got the files.
    for (auto& l : r.limits)
        if (!cg->has_file(l.file))
            return error::make(errc::controller_unavailable, l.given() + " needs the " + l.controller +
                                                                 " controller (" + l.file +
                                                                 "), which is not available in " + *cgpath);

    stop_unless_handed_on.armed = false;
    placed p;
    p.unit = unit;
    p.cgroup = *cgpath;
    p.process = std::move(*sp);
    p.held = std::make_unique<scope_tree>(std::move(*cg), *mgr, unit, keeper ? std::move(**keeper) : sentinel{});
    return p;
}

} // namespace cgrun::detail
