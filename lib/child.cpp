// The child's lifecycle: spawn() with its fallback over the methods, waiting, the kill
// policy and the cleanup. It talks to a tree only through lib/tree.hpp.

#include "child_state.hpp"
#include "identity.hpp"

#include <poll.h>

namespace cgrun {

using namespace std::chrono_literals;
using detail::child_state;

namespace {

// ---- the kill policy ----------------------------------------------------------------------

// What the tree holds as the run ends (once; only a tree that is not empty pays for it).
void note_leftovers(child_state& st)
{
    if (st.leftovers)
        return;
    st.leftovers.emplace();
    detail::record_leftovers(st.held->members(), st.main_origin, *st.leftovers, st.leftovers_total);
}

// Stops the whole tree: graceful signal and grace period if the policy has one, then SIGKILL.
// The order matters: sample first (a scope's cgroup goes as soon as it is empty), then let
// go of the sentinel, then list what is left, then kill. (Freezing the tree while it is
// listed was tried: waking 1000 tasks into the freezer delayed the kill by 4-6 ms.)
void stop_tree(child_state& st, const kill_policy& policy)
{
    auto& t = *st.held;
    kill_info k;
    k.mechanism = t.mechanism();
    t.sample(st.used);
    t.unhold();
    note_leftovers(st);
    bool empty = false;
    if (policy.grace.count() > 0 && policy.signal != SIGKILL) {
        k.graceful_signal = policy.signal;
        t.signal(policy.signal);
        auto r = t.wait_empty(sys::now() + policy.grace);
        empty = r && *r;
        k.escalated = !empty;
    }
    if (!empty) {
        if (k.graceful_signal)
            t.sample(st.used); // what the grace period added
        if (auto mech = t.kill(); mech)
            k.mechanism = *mech;
        else
            st.late_error = mech.error().message();
        auto r = t.wait_empty(sys::now() + policy.kill_wait);
        if (r && !*r)
            st.late_error = "the tree did not die within " + std::to_string(policy.kill_wait.count()) + " ms";
        else if (!r)
            st.late_error = r.error().message();
    }
    st.kill = k;
}

// Reaps the main process (waiting up to kill_wait when `patient`), counts what is left and,
// when nothing is, removes what was created for the tree. True when all of that is done.
bool cleanup(child_state& st, bool patient)
{
    auto& t = *st.held;
    auto& m = st.main;
    t.unhold();
    if (!m.reaped) {
        // The main process is dead or dying; a D-state task is bounded by kill_wait.
        auto until = sys::now() + (patient ? st.opts.kill.kill_wait : 0ms);
        while (!m.reaped) {
            if (auto r = m.collect(false); !r) {
                st.late_error = r.error().message();
                break;
            }
            if (m.reaped || sys::now() >= until)
                break;
            (void)sys::poll_one(m.pidfd.get(), POLLIN, 10ms);
        }
    }
    st.remaining = t.remaining();
    t.sample(st.used);
    if (st.remaining == 0)
        if (auto r = t.finish(); !r)
            st.late_error = r.error().message();
    // A main process that could not be reaped keeps its pidfd for a later retry.
    if (m.reaped)
        m.pidfd.reset();
    st.memory_events.reset();
    bool done = m.reaped && st.remaining == 0 && !t.holds_resources(), gone = done;
    if (!done && st.opts.keep_orphans && m.reaped && !st.timed_out && !st.cpu_time_exceeded && !st.cancelled) {
        // Kept orphans are the caller's now: neither the guard nor a sweep may kill them.
        if (auto moved = t.hand_over(); !moved)
            st.late_error = moved.error().message();
        else if (*moved)
            st.where.cgroup = *moved;
        done = true;
    }
    if (done)
        st.guarded.drop(gone);
    return done;
}

// The run is over (the main process exited, or the tree was stopped): reap, measure,
// remove what we created, and make the report.
run_report finish(child_state& st)
{
    (void)cleanup(st, true);
    st.wall_ms = std::chrono::duration<double, std::milli>(sys::now() - st.started).count();
    st.report = detail::make_report(st);
    return *st.report;
}

// A run that ended with something left over (a task that could not die in time, orphans
// kept, a cgroup that could not be removed): try the cleanup again, without waiting.
void retry_cleanup(child_state& st)
{
    if (st.main.reaped && st.remaining == 0 && !st.held->holds_resources())
        return;
    if (cleanup(st, false))
        st.late_error.reset();
    st.report = detail::make_report(st);
}

run_report on_main_exit(child_state& st)
{
    // Peek, do not reap: the main process stays a zombie while the rest of the tree is
    // stopped, so its pid and group id cannot be reused under a signal sent by number.
    (void)st.main.collect(true);
    st.held->sample(st.used);
    st.held->unhold(); // sampled: the scope may go once the tree is empty
    auto alive = st.held->alive();
    if (alive && *alive) {
        note_leftovers(st);
        if (!st.opts.keep_orphans)
            stop_tree(st, st.opts.kill);
    }
    return finish(st);
}

// A limit (the timeout, the CPU time) was reached: unless the main process exited in the same
// instant (then it is no limit's doing), mark which and stop the tree.
run_report limit_reached(child_state& st, bool& which)
{
    auto ws = st.main.wait(st.main.pidfd.get(), true);
    if (ws && ws->exited)
        return on_main_exit(st);
    which = true;
    stop_tree(st, st.opts.kill);
    return finish(st);
}

} // namespace

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

pid_t child::pid() const noexcept { return s_ ? s_->main.pid : -1; }
int child::pidfd() const noexcept { return s_ ? s_->main.pidfd.get() : -1; }
const placement& child::placement() const noexcept
{
    static const cgrun::placement none;
    return s_ ? s_->where : none;
}
int child::memory_events_fd() const noexcept { return s_ ? s_->memory_events.get() : -1; }
std::optional<std::chrono::steady_clock::time_point> child::deadline() const noexcept
{
    if (!s_ || !s_->next_cpu_check)
        return s_ ? s_->deadline : std::nullopt;
    return s_->deadline ? std::min(*s_->deadline, *s_->next_cpu_check) : s_->next_cpu_check;
}
unique_fd child::take_stdin() noexcept { return s_ ? std::move(s_->ends[0]) : unique_fd{}; }
unique_fd child::take_stdout() noexcept { return s_ ? std::move(s_->ends[1]) : unique_fd{}; }
unique_fd child::take_stderr() noexcept { return s_ ? std::move(s_->ends[2]) : unique_fd{}; }

void child::detach() noexcept
{
    if (!s_)
        return;
    s_->detached = true;
    s_->guarded.drop();
    s_->held->abandon();
}

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
        if (st.next_cpu_check && *st.next_cpu_check < limit)
            limit = *st.next_cpu_check;
        auto now = sys::now();
        auto left = limit == std::chrono::steady_clock::time_point::max()
                        ? std::chrono::microseconds(-1)
                        : std::chrono::duration_cast<std::chrono::microseconds>(std::max(limit - now, now - now));
        // poll() lets the kernel fire up to 0.1% of the timeout late (select_estimate_accuracy,
        // at most 100 ms): wait in slices of at most 50 ms so a deadline is met within ~50 us.
        if (st.deadline && (left.count() < 0 || left > 50ms))
            left = 50ms;
        auto ev = sys::poll_two(st.main.pidfd.get(), POLLIN, st.memory_events.get(), POLLPRI, left);
        if (!ev)
            return ev.error();
        if (ev->second) {
            // memory.events changed (an OOM kill, or memory.max/high reached): sample now,
            // the cgroup may be gone by the time the main process's exit is seen.
            st.held->sample(st.used);
            if (!sys::pread_all(st.memory_events.get(), "memory.events")) // ENODEV: removed
                st.memory_events.reset();
        }
        if (ev->first)
            return std::optional<run_report>(on_main_exit(st));
        if (st.deadline && sys::now() >= *st.deadline)
            return std::optional<run_report>(limit_reached(st, st.timed_out));
        if (st.next_cpu_check && sys::now() >= *st.next_cpu_check && detail::cpu_time_used_up(st))
            return std::optional<run_report>(limit_reached(st, st.cpu_time_exceeded));
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

// terminate() and kill(): stops the tree now with `policy`, unless the run is over already.
static result<run_report> cancel(child_state* st, const char* what, kill_policy policy)
{
    if (!st)
        return error::make(errc::invalid_argument, std::string(what) + " a moved-from child");
    if (st->report)
        return *st->report;
    st->cancelled = true;
    stop_tree(*st, policy);
    return finish(*st);
}

result<run_report> child::terminate()
{
    return cancel(s_.get(), "terminate", s_ ? s_->opts.kill : kill_policy{});
}

result<run_report> child::kill()
{
    kill_policy now = s_ ? s_->opts.kill : kill_policy{};
    now.grace = 0ms;
    return cancel(s_.get(), "kill", now);
}

result<child> spawn(options opts)
{
    auto limits = detail::check_options(opts);
    if (!limits)
        return limits.error();
    if (auto id = detail::settle_identity(opts); !id)
        return id.error();

    auto st = std::make_unique<child_state>();
    st->opts = std::move(opts);
    st->started = sys::now();
    st->report_start = std::chrono::system_clock::now();
    if (st->opts.timeout && st->opts.timeout->count() > 0)
        st->deadline = st->started + *st->opts.timeout;
    if (st->opts.cpu_time)
        st->next_cpu_check = st->started;

    // The guard runs before the command can: an unheld child execs during placement, and a
    // spawner killed between that and the registration below must not leave it unguarded
    // for longer than one message takes.
    if (st->opts.spawner_guard)
        if (auto g = detail::guard_ready(); !g)
            return g.error();
    auto p = detail::place(detail::methods_for(st->opts, st->where), st->opts.method, {st->opts, *limits, &st->main}, st->where);
    if (!p)
        return p.error();
    st->main.pid = p->process.pid;
    st->main.pidfd = p->process.pidfd.release();
    st->held = std::move(p->held);
    st->memory_events = st->held->open_memory_events();
    st->where.unit = p->unit;
    st->where.cgroup = p->cgroup;
    st->where.pgid = p->process.pid;
    st->main_origin = {p->process.pid, sys::own_session()}; // the child leads a group in our session
    st->ends = std::move(p->process.parent_ends);

    child c(std::move(st));
    if (c.s_->opts.spawner_guard) {
        auto g = detail::guard_tree(c.s_->held->guard());
        if (!g)
            return g.error(); // c kills the tree
        c.s_->guarded = std::move(*g);
    }
    // Let it exec (its tree owns it by now), and learn whether exec worked.
    if (auto r = detail::release(p->process); !r) {
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
