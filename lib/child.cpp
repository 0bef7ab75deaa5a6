#include "child_state.hpp"

#include "cgroup_path.hpp"
#include "host.hpp"
#include "limits.hpp"
#include "unit_name.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>

namespace cgrun {

using namespace std::chrono_literals;
using detail::child_state;

namespace {

// ---- process group helpers --------------------------------------------------------------

bool pidfd_group_signals_work(int pidfd)
{
    static std::atomic<int> known{-1};
    int k = known.load();
    if (k >= 0)
        return k == 1;
    int r = sys::pidfd_signal_group(pidfd, 0);
    bool ok = r != -EINVAL;
    known.store(ok ? 1 : 0);
    return ok;
}

// ---- method attempts --------------------------------------------------------------------

struct attempt_failure {
    error err;
    bool fatal; // do not fall back (exec errors, bad limits, invalid arguments)
};

template <typename T>
using attempt = std::variant<T, attempt_failure>;

bool is_fatal(const error& e)
{
    auto c = e.code;
    return c == errc::exec_not_found || c == errc::exec_not_executable || c == errc::exec_failed ||
           c == errc::invalid_argument || c == errc::controller_unavailable;
}

detail::spawn_request make_request(const options& o)
{
    detail::spawn_request r;
    r.argv = o.argv;
    r.env = o.env;
    r.cwd = o.cwd;
    r.stdio = o.stdio;
    r.inherit_fds = o.inherit_fds;
    return r;
}

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

bool memory_controller_available()
{
    static const bool available = [] {
        auto root = detail::cgroup2();
        if (!root)
            return false;
        auto text = sys::read_file(root->fd, "cgroup.controllers");
        return text && (" " + *text + " ").find(" memory") != std::string::npos;
    }();
    return available;
}

attempt<detail::spawned> try_scope(child_state& st, const std::vector<detail::limit_setting>& limits)
{
    auto& o = st.opts;
    auto root = detail::cgroup2();
    if (!root)
        return attempt_failure{error::make(errc::cgroup2_unavailable,
                                           "no cgroup2 mount to kill a scope through: " + root.error().message()),
                               false};
    std::string unit;
    if (!o.unit.empty()) {
        auto v = detail::validate_scope_name(o.unit);
        if (!v)
            return attempt_failure{v.error(), true};
        unit = *v;
    } else {
        unit = detail::generate_scope_name(o.argv[0]);
    }
    auto mgr = detail::connect_manager(o.bus, o.bus_timeout);
    if (!mgr)
        return attempt_failure{mgr.error(), false};

    auto req = make_request(o);
    req.hold = true;
    auto sp = detail::start_process(std::move(req));
    if (!sp)
        return attempt_failure{sp.error(), is_fatal(sp.error())};

    detail::scope_request sr;
    sr.unit = unit;
    sr.description = describe(o.argv);
    sr.slice = o.slice;
    sr.pids = {sp->pid};
    // systemd removes a scope's cgroup the moment it is empty, before we could read its
    // final memory.peak and memory.events: where there is a memory controller, a sentinel
    // keeps it populated until the main process's exit has been sampled.
    // Gives up this attempt: the held child and the sentinel die, the scope (if systemd
    // made one) is stopped.
    auto abandon = [&](bool stop_unit) {
        sp->pidfd.reset(); // kills and reaps the held child
        detail::stop_sentinel(st.keeper);
        if (stop_unit)
            detail::stop_scope(**mgr, unit, o.bus_timeout);
    };
    if (memory_controller_available()) {
        auto keeper = detail::start_sentinel();
        if (!keeper) {
            abandon(false);
            return attempt_failure{keeper.error(), false};
        }
        sr.pids.push_back(keeper->pid);
        st.keeper = std::move(*keeper);
    }
    if (o.timeout && o.timeout->count() > 0)
        sr.runtime_max_usec =
            static_cast<std::uint64_t>((*o.timeout + o.kill.grace + o.backstop_margin).count()) * 1000;
    // If we die, systemd stops the scope itself: KillSignal, then SIGKILL after this long.
    sr.kill_signal = o.kill.grace.count() > 0 ? o.kill.signal : SIGKILL;
    sr.timeout_stop_usec = static_cast<std::uint64_t>(std::max(o.kill.grace, 100ms).count()) * 1000;
    for (auto& l : limits)
        sr.u64_properties.emplace_back(l.property, l.property_value);

    if (auto started = detail::start_scope(**mgr, sr, o.bus_timeout); !started) {
        abandon(false);
        // The scope may exist with our (now dead) child: it empties and systemd collects it.
        return attempt_failure{started.error(), false};
    }
    // Where the scope lives, as our cgroup namespace sees it: the held child is in it now.
    // This is the unit's ControlGroup property mapped onto our mount, without a round trip
    // and without assuming that systemd shares our cgroup namespace.
    auto cgpath = detail::process_cgroup(sp->pid);
    if (!cgpath || cgpath->size() < unit.size() ||
        cgpath->compare(cgpath->size() - unit.size(), unit.size(), unit) != 0) {
        abandon(true);
        return attempt_failure{error::make(errc::scope_failed, "scope " + unit + ": the child is in " +
                                                                   (cgpath ? *cgpath : std::string("no cgroup"))),
                               false};
    }
    auto cg = detail::cgroup_dir::open(root->fd, *cgpath);
    if (!cg) {
        abandon(true);
        return attempt_failure{error::make(errc::scope_failed, "scope " + unit + ": " + cg.error().message()), false};
    }
    // systemd accepts limit properties even where the controller is missing and then
    // silently does not enforce them: check that the scope got the files.
    for (auto& l : limits) {
        if (!cg->has_file(l.file)) {
            abandon(true);
            return attempt_failure{error::make(errc::controller_unavailable,
                                               l.property + " needs the " + l.controller +
                                                   " controller, which is not available in " + *cgpath),
                                   true};
        }
    }
    st.cg = std::move(*cg);
    st.manager = *mgr;
    st.info.unit = unit;
    st.info.cgroup = *cgpath;
    return std::move(*sp);
}

std::mutex swept_mutex;
std::set<std::string> swept_parents;

// Removes leaves of crashed earlier runs ("cgrun-<pid>-<n>" whose pid is gone), once per
// parent per process: a crashed spawner cannot clean up after itself.
void sweep_stale(int mount_fd, const std::string& parent)
{
    {
        std::lock_guard l(swept_mutex);
        if (!swept_parents.insert(parent).second)
            return;
    }
    auto rel = detail::relative_cgroup_path(parent);
    if (!rel)
        return;
    auto pfd = sys::open_dir(mount_fd, rel->empty() ? "." : *rel);
    if (!pfd)
        return;
    auto subs = sys::list_subdirs(pfd->get(), parent);
    if (!subs)
        return;
    for (auto& name : *subs) {
        int pid = 0;
        unsigned long n = 0;
        if (std::sscanf(name.c_str(), "cgrun-%d-%lu", &pid, &n) != 2 || pid == ::getpid())
            continue;
        if (sys::kill_pid(pid, 0) != -ESRCH)
            continue;
        std::string path = (rel->empty() ? "" : "/" + *rel) + "/" + name;
        auto cg = detail::cgroup_dir::open(mount_fd, path);
        if (!cg)
            continue;
        if (cg->kill_all() && cg->wait_empty(sys::now() + 1s).has_value())
            (void)cg->remove(mount_fd);
    }
}

attempt<detail::spawned> try_cgroup(child_state& st, const std::vector<detail::limit_setting>& limits)
{
    auto& o = st.opts;
    auto root = detail::cgroup2();
    if (!root)
        return attempt_failure{root.error(), false};
    std::string parent = o.cgroup_parent;
    if (parent.empty()) {
        auto own = detail::own_cgroup();
        if (!own)
            return attempt_failure{own.error(), false};
        parent = *own;
    } else if (!detail::relative_cgroup_path(parent)) {
        return attempt_failure{error::make(errc::invalid_argument, "cgroup parent " + parent), true};
    }
    if (!parent.empty() && parent[0] != '/')
        parent = "/" + parent;

    sweep_stale(root->fd, parent);

    static std::atomic<unsigned long> counter{0};
    std::string name = "cgrun-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    auto cg = detail::cgroup_dir::create(root->fd, parent, name);
    if (!cg) {
        auto e = cg.error();
        if (e.code == std::errc::permission_denied || e.code == std::errc::read_only_file_system ||
            e.code == std::errc::operation_not_permitted)
            return attempt_failure{error::make(errc::cgroup_not_delegated, e.message()), false};
        if (e.code == std::errc::no_such_file_or_directory && !o.cgroup_parent.empty())
            return attempt_failure{error::make(errc::cgroup_not_delegated, e.message()), false};
        return attempt_failure{e, false};
    }
    auto remove_leaf = [&] { (void)cg->remove(root->fd); };

    if (!limits.empty()) {
        auto rel = detail::relative_cgroup_path(parent);
        auto pfd = sys::open_dir(root->fd, rel->empty() ? "." : *rel);
        auto controllers = pfd ? sys::read_file(pfd->get(), "cgroup.controllers") : result<std::string>(pfd.error());
        for (auto& l : limits) {
            std::string avail = controllers ? " " + *controllers : "";
            for (auto& c : avail)
                if (c == '\n')
                    c = ' ';
            if (avail.find(" " + l.controller + " ") == std::string::npos) {
                remove_leaf();
                return attempt_failure{error::make(errc::controller_unavailable,
                                                   l.property + " needs the " + l.controller +
                                                       " controller, which is not available in " + parent),
                                       true};
            }
            if (!cg->has_file(l.file)) {
                // Enabling a controller for the children fails with EBUSY while the parent
                // itself holds processes (the "no internal processes" rule), e.g. our own cgroup.
                auto w = sys::write_file(pfd->get(), "cgroup.subtree_control", "+" + l.controller);
                if (!w) {
                    remove_leaf();
                    return attempt_failure{error::make(errc::controller_unavailable,
                                                       "enable the " + l.controller + " controller in " + parent +
                                                           ": " + w.error().message()),
                                           true};
                }
            }
            if (auto w = cg->write(l.file, l.file_value); !w) {
                remove_leaf();
                return attempt_failure{error::make(errc::controller_unavailable, w.error().message()), true};
            }
        }
    }

    auto req = make_request(o);
    req.cgroup_fd = cg->fd();
    auto sp = detail::start_process(std::move(req));
    if (!sp) {
        remove_leaf();
        return attempt_failure{sp.error(), is_fatal(sp.error())};
    }
    if (!sp->in_cgroup) {
        // Moving a process costs a cgroup_threadgroup_rwsem write lock (an RCU grace period
        // since 6.0): that is why CLONE_INTO_CGROUP is tried first.
        if (auto w = cg->write("cgroup.procs", std::to_string(sp->pid)); !w) {
            sp->pidfd.reset(); // kills and reaps the held child
            remove_leaf();
            return attempt_failure{error::make(errc::cgroup_not_delegated, w.error().message()), false};
        }
    }
    st.info.cgroup = cg->path();
    st.cg = std::move(*cg);
    return std::move(*sp);
}

attempt<detail::spawned> try_pgroup(child_state& st, const std::vector<detail::limit_setting>& limits)
{
    if (!limits.empty())
        return attempt_failure{error::make(errc::controller_unavailable,
                                           limits.front().property + " needs the " + limits.front().controller +
                                               " controller, and the pgroup method has no cgroup"),
                               true};
    auto sp = detail::start_process(make_request(st.opts));
    if (!sp)
        return attempt_failure{sp.error(), is_fatal(sp.error())};
    return std::move(*sp);
}

} // namespace

namespace {
void retry_cleanup(child_state& st);
}

// ---- child ------------------------------------------------------------------------------

child::child(std::unique_ptr<child_state> s) noexcept : s_(std::move(s)) {}
child::child(child&&) noexcept = default;
child& child::operator=(child&& other) noexcept
{
    if (this != &other) {
        child old(std::move(*this)); // cleaned up like a destroyed child
        s_ = std::move(other.s_);
    }
    return *this;
}

child::~child()
{
    if (!s_ || s_->detached)
        return;
    if (!s_->report)
        (void)kill();
    else
        retry_cleanup(*s_);
}

pid_t child::pid() const noexcept { return s_ ? s_->pid : -1; }
int child::pidfd() const noexcept { return s_ ? s_->pidfd.get() : -1; }
const containment_info& child::containment() const noexcept
{
    static const containment_info none;
    return s_ ? s_->info : none;
}
int child::memory_events_fd() const noexcept
{
    return s_ ? s_->memory_events.get() : -1;
}
std::optional<std::chrono::steady_clock::time_point> child::deadline() const noexcept
{
    return s_ ? s_->deadline : std::nullopt;
}
unique_fd child::take_stdin() noexcept { return s_ ? std::move(s_->ends[0]) : unique_fd{}; }
unique_fd child::take_stdout() noexcept { return s_ ? std::move(s_->ends[1]) : unique_fd{}; }
unique_fd child::take_stderr() noexcept { return s_ ? std::move(s_->ends[2]) : unique_fd{}; }

void child::detach() noexcept
{
    if (!s_)
        return;
    s_->detached = true;
    s_->cg.release();
}

namespace {

// Collects the main process's status. peek keeps it a zombie, which keeps its pid and
// process group id from being reused while we still signal the group by number.
result<void> collect(child_state& st, bool peek)
{
    if (st.reaped)
        return {};
    auto ws = sys::wait_pidfd(st.pidfd.get(), peek);
    if (!ws)
        return ws.error();
    if (ws->exited) {
        st.exit = *ws;
        st.reaped = !peek;
    }
    return {};
}

void sample_cgroup(child_state& st)
{
    if (!st.cg.valid())
        return;
    auto c = st.cg.cpu();
    if (c.user_ms + c.system_ms >= st.cpu.user_ms + st.cpu.system_ms)
        st.cpu = c;
    if (auto m = st.cg.memory_peak())
        st.memory_peak = std::max(st.memory_peak.value_or(0), *m);
    st.oom = st.oom || st.cg.oom_killed();
}

// Is anything of the tree, other than the main process if it is a zombie, still alive?
result<bool> tree_alive(child_state& st)
{
    if (st.cg.valid())
        return st.cg.populated();
    // Process group: reap the leader first if it exited, then probe the group. The pidfd
    // names the group without its number, so this is safe after reaping.
    if (pidfd_group_signals_work(st.pidfd.get())) {
        if (auto r = collect(st, false); !r)
            return r.error();
        if (sys::pidfd_signal_group(st.pidfd.get(), 0) != 0)
            return false;
        // The group still has members, but killed ones stay zombies until their new parent
        // (init or a subreaper) reaps them, which some inits do only now and then.
        return sys::group_members(st.pid) > 0;
    }
    if (auto r = collect(st, true); !r)
        return r.error();
    return sys::group_members(st.pid) > 0;
}

void signal_tree(child_state& st, int sig)
{
    if (st.cg.valid()) {
        (void)st.cg.signal_all(sig);
        return;
    }
    if (pidfd_group_signals_work(st.pidfd.get())) {
        (void)sys::pidfd_signal_group(st.pidfd.get(), sig);
        if (sig != SIGKILL)
            (void)sys::pidfd_signal_group(st.pidfd.get(), SIGCONT);
    } else if (!st.reaped) {
        (void)sys::kill_group(st.pid, sig);
        if (sig != SIGKILL)
            (void)sys::kill_group(st.pid, SIGCONT);
    }
}

// Waits until tree_alive() is false or the deadline passes.
result<bool> wait_tree_empty(child_state& st, std::chrono::steady_clock::time_point deadline)
{
    if (st.cg.valid())
        return st.cg.wait_empty(deadline);
    for (auto step = 50us;; step = std::min<std::chrono::microseconds>(step * 2, 5ms)) {
        auto alive = tree_alive(st);
        if (!alive)
            return alive.error();
        if (!*alive)
            return true;
        if (sys::now() >= deadline)
            return false;
        sys::sleep_for(step);
    }
}

// Stops the whole tree: graceful signal and grace period if the policy has one, then SIGKILL.
void stop_tree(child_state& st, const kill_policy& policy)
{
    kill_info k;
    k.mechanism = st.cg.valid() ? (detail::cgroup_kill_disabled() ? "freeze-kill" : "cgroup.kill") : "killpg";
    sample_cgroup(st);
    detail::stop_sentinel(st.keeper);
    bool empty = false;
    if (policy.grace.count() > 0 && policy.signal != SIGKILL) {
        k.graceful_signal = policy.signal;
        signal_tree(st, policy.signal);
        auto r = wait_tree_empty(st, sys::now() + policy.grace);
        empty = r && *r;
        k.escalated = !empty;
    }
    if (!empty) {
        if (k.graceful_signal)
            sample_cgroup(st); // what the grace period added
        if (st.cg.valid()) {
            auto mech = st.cg.kill_all();
            if (!mech)
                st.late_error = mech.error().message();
            else
                k.mechanism = *mech == detail::kill_mechanism::cgroup_kill ? "cgroup.kill" : "freeze-kill";
        } else {
            signal_tree(st, SIGKILL);
        }
        auto r = wait_tree_empty(st, sys::now() + policy.kill_wait);
        if (r && !*r)
            st.late_error = "the tree did not die within " + std::to_string(policy.kill_wait.count()) + " ms";
        else if (!r)
            st.late_error = r.error().message();
    }
    st.kill = k;
}

int count_remaining(child_state& st)
{
    if (st.cg.valid()) {
        if (auto pop = st.cg.populated(); pop && !*pop)
            return 0;
        return static_cast<int>(st.cg.pids().size());
    }
    if (pidfd_group_signals_work(st.pidfd.get()) && sys::pidfd_signal_group(st.pidfd.get(), 0) != 0)
        return 0;
    return sys::group_members(st.pid);
}

// The run is over (the main process exited, or the tree was stopped): reap, measure,
// remove what we created, and make the report.
// Reaps the main process (waiting up to kill_wait when `patient`), counts what is left and,
// when nothing is, removes the cgroup or lets systemd collect the scope. True when all of
// that is done.
bool cleanup(child_state& st, bool patient)
{
    detail::stop_sentinel(st.keeper);
    if (!st.reaped) {
        // The main process is dead or dying; a D-state task is bounded by kill_wait.
        auto until = sys::now() + (patient ? st.opts.kill.kill_wait : 0ms);
        while (!st.reaped) {
            if (auto r = collect(st, false); !r) {
                st.late_error = r.error().message();
                break;
            }
            if (st.reaped || sys::now() >= until)
                break;
            (void)sys::poll_one(st.pidfd.get(), POLLIN, 10ms);
        }
    }
    st.remaining = count_remaining(st);
    sample_cgroup(st);

    if (st.cg.valid() && st.remaining == 0) {
        if (st.manager) {
            // Wait until systemd has collected the scope and removed its cgroup, so that
            // nothing we created is left when we return.
            detail::finish_scope(*st.manager, *st.info.unit);
            auto until = sys::now() + 500ms;
            // systemd needs well under a millisecond when idle: poll finely at first.
            for (auto step = 20us; sys::now() < until;
                 step = std::min<std::chrono::microseconds>(step + step / 4, 1ms)) {
                auto rel = detail::relative_cgroup_path(*st.info.cgroup);
                if (!sys::exists_at(detail::cgroup2()->fd, *rel))
                    break;
                sys::sleep_for(step);
            }
            st.cg.release();
        } else if (auto r = st.cg.remove(detail::cgroup2()->fd); !r) {
            st.late_error = r.error().message();
        }
    }
    // A main process that could not be reaped keeps its pidfd for a later retry.
    if (st.reaped)
        st.pidfd.reset();
    st.memory_events.reset();
    return st.reaped && st.remaining == 0 && !st.cg.valid();
}

run_report make_report(child_state& st)
{
    run_report rep;
    rep.command = st.opts.argv;
    rep.used = st.info.used;
    rep.fallbacks = st.info.fallbacks;
    rep.unit = st.info.unit;
    rep.cgroup = st.info.cgroup;
    rep.pid = st.pid;
    if (st.exit) {
        if (st.exit->code == CLD_EXITED)
            rep.exit_code = st.exit->status;
        else
            rep.signal = st.exit->status;
        // The main process's own usage (and that of children it waited for): the only
        // figure for pgroup, and a floor where the cgroup vanished before we could read it.
        double u = static_cast<double>(st.exit->usage.ru_utime.tv_sec) * 1e3 +
                   static_cast<double>(st.exit->usage.ru_utime.tv_usec) / 1e3;
        double s = static_cast<double>(st.exit->usage.ru_stime.tv_sec) * 1e3 +
                   static_cast<double>(st.exit->usage.ru_stime.tv_usec) / 1e3;
        if (u + s > st.cpu.user_ms + st.cpu.system_ms) {
            st.cpu.user_ms = u;
            st.cpu.system_ms = s;
        }
    }
    rep.timed_out = st.timed_out;
    rep.cancelled = st.cancelled;
    rep.kill = st.kill;
    rep.remaining_processes = st.remaining;
    rep.wall_time_ms = st.wall_ms;
    rep.cpu_user_ms = st.cpu.user_ms;
    rep.cpu_system_ms = st.cpu.system_ms;
    rep.memory_peak_bytes = st.memory_peak;
    rep.oom_killed = st.oom;
    rep.error = st.late_error;
    return rep;
}

// The run is over (the main process exited, or the tree was stopped): reap, measure,
// remove what we created, and make the report.
run_report finish(child_state& st)
{
    (void)cleanup(st, true);
    st.wall_ms = std::chrono::duration<double, std::milli>(sys::now() - st.started).count();
    st.report = make_report(st);
    return *st.report;
}

// A run that ended with something left over (a task that could not die in time, orphans
// kept, a cgroup that could not be removed): try the cleanup again, without waiting.
void retry_cleanup(child_state& st)
{
    if (st.reaped && st.remaining == 0 && !st.cg.valid())
        return;
    if (cleanup(st, false))
        st.late_error.reset();
    st.report = make_report(st);
}

run_report on_main_exit(child_state& st)
{
    // Keep the main process a zombie while the rest is stopped (see collect()).
    (void)collect(st, true);
    sample_cgroup(st);
    detail::stop_sentinel(st.keeper); // sampled: the scope may go once the tree is empty
    if (!st.opts.keep_orphans) {
        auto alive = tree_alive(st);
        if (alive && *alive)
            stop_tree(st, st.opts.kill);
    }
    return finish(st);
}

} // namespace

result<std::optional<run_report>> child::wait_for(std::chrono::milliseconds d)
{
    if (!s_)
        return error::make(errc::invalid_argument, "wait on a moved-from child");
    auto& st = *s_;
    if (st.report) {
        retry_cleanup(st);
        return std::optional<run_report>(*st.report);
    }
    if (st.detached)
        return error::make(errc::invalid_argument, "wait on a detached child");
    auto until = d.count() < 0 ? std::chrono::steady_clock::time_point::max() : sys::now() + d;
    for (;;) {
        auto limit = until;
        if (st.deadline && *st.deadline < limit)
            limit = *st.deadline;
        auto now = sys::now();
        auto left = limit == std::chrono::steady_clock::time_point::max()
                        ? std::chrono::microseconds(-1)
                        : std::chrono::duration_cast<std::chrono::microseconds>(std::max(limit - now, now - now));
        // poll() lets the kernel fire up to 0.1% of the timeout late (select_estimate_accuracy,
        // at most 100 ms): wait in slices of at most 50 ms so a deadline is met within ~50 us.
        if (st.deadline && (left.count() < 0 || left > 50ms))
            left = 50ms;
        auto ev = sys::poll_two(st.pidfd.get(), POLLIN, st.memory_events.get(), POLLPRI, left);
        if (!ev)
            return ev.error();
        if (ev->second) {
            // memory.events changed (an OOM kill, or memory.max/high reached): sample now,
            // the cgroup may be gone by the time the main process's exit is seen.
            sample_cgroup(st);
            auto again = sys::pread_all(st.memory_events.get(), "memory.events");
            if (!again) // ENODEV: removed; stop polling it
                st.memory_events.reset();
        }
        if (ev->first)
            return std::optional<run_report>(on_main_exit(st));
        if (st.deadline && sys::now() >= *st.deadline) {
            // The main process may have exited in the same instant: then it is not a timeout.
            auto ws = sys::wait_pidfd(st.pidfd.get(), true);
            if (ws && ws->exited)
                return std::optional<run_report>(on_main_exit(st));
            st.timed_out = true;
            stop_tree(st, st.opts.kill);
            return std::optional<run_report>(finish(st));
        }
        if (sys::now() >= until)
            return std::optional<run_report>();
    }
}

result<run_report> child::wait()
{
    auto r = wait_for(std::chrono::milliseconds(-1));
    if (!r)
        return r.error();
    return std::move(**r);
}

result<run_report> child::terminate()
{
    if (!s_)
        return error::make(errc::invalid_argument, "terminate a moved-from child");
    auto& st = *s_;
    if (st.report)
        return *st.report;
    st.cancelled = true;
    stop_tree(st, st.opts.kill);
    return finish(st);
}

result<run_report> child::kill()
{
    if (!s_)
        return error::make(errc::invalid_argument, "kill a moved-from child");
    auto& st = *s_;
    if (st.report)
        return *st.report;
    st.cancelled = true;
    kill_policy now = st.opts.kill;
    now.grace = 0ms;
    stop_tree(st, now);
    return finish(st);
}

result<child> spawn(options opts)
{
    if (opts.argv.empty())
        return error::make(errc::invalid_argument, "no command");
    if (opts.timeout && opts.timeout->count() < 0)
        return error::make(errc::invalid_argument, "negative timeout");
    if (opts.kill.signal <= 0 || opts.kill.signal >= NSIG)
        return error::make(errc::invalid_argument, "invalid signal " + std::to_string(opts.kill.signal));
    auto limits = detail::parse_limits(opts.limits);
    if (!limits)
        return limits.error();

    auto st = std::make_unique<child_state>();
    st->opts = std::move(opts);
    st->started = sys::now();
    if (st->opts.timeout && st->opts.timeout->count() > 0)
        st->deadline = st->started + *st->opts.timeout;

    std::vector<method> order;
    switch (st->opts.containment) {
    case method::automatic:
        order = {method::scope, method::cgroup, method::pgroup};
        break;
    default:
        order = {st->opts.containment};
    }

    std::optional<detail::spawned> sp;
    for (auto m : order) {
        attempt<detail::spawned> a = m == method::scope    ? try_scope(*st, *limits)
                                     : m == method::cgroup ? try_cgroup(*st, *limits)
                                                           : try_pgroup(*st, *limits);
        if (auto* ok = std::get_if<detail::spawned>(&a)) {
            st->info.used = m;
            sp = std::move(*ok);
            break;
        }
        auto& f = std::get<attempt_failure>(a);
        if (f.fatal || order.size() == 1)
            return f.err;
        st->info.fallbacks.push_back({m, f.err.message()});
    }
    if (!sp)
        return error::make(errc::spawn_failed, "no containment method worked");

    st->pid = sp->pid;
    st->pidfd = sp->pidfd.release();
    if (st->cg.valid())
        st->memory_events = st->cg.open_memory_events();
    st->info.pgid = sp->pid;
    st->ends = std::move(sp->parent_ends);

    child c(std::move(st));
    // Let it exec (a scope owns it by now), and learn whether exec worked.
    if (auto r = detail::release(*sp); !r) {
        // The child exited with 127: reap it and remove what was created for it.
        (void)c.wait();
        return r.error();
    }
    return c;
}

result<run_report> run(options opts)
{
    auto c = spawn(std::move(opts));
    if (!c)
        return c.error();
    return c->wait();
}

} // namespace cgrun
