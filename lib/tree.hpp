#pragma once

// A way of holding a process tree (a method), as the lifecycle in child.cpp sees it: the
// interface each method implements, and the placement functions that create one.

#include "cgroup_fs.hpp"
#include "guard.hpp"
#include "limits.hpp"
#include "spawn.hpp"
#include "sys.hpp"

#include <cgrun/child.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace cgrun::detail {

using deadline_t = std::chrono::steady_clock::time_point;

// The command's own process: its pidfd, and its status once it exited.
struct main_process {
    pid_t pid = -1;
    unique_fd pidfd;
    std::optional<sys::wait_status> exit;
    bool reaped = false;
    // How `pidfd` tells the exit status: waitid on it, as the main process is our child. The
    // subreaper method's main process is the reaper's child: there `pidfd` is a socket on
    // which the reaper reports the exit, and the method sets its own reader.
    result<sys::wait_status> (*wait)(int fd, bool peek) = sys::wait_pidfd;

    // Collects the exit status if there is one. `peek` leaves a zombie, which keeps the pid
    // and the process group id from being reused while the group is still signalled by
    // number (the pgroup method without PIDFD_SIGNAL_PROCESS_GROUP).
    result<void> collect(bool peek);
};

// What the tree used: merged over several samples (a sample never lowers a figure).
struct usage {
    cpu_times cpu;
    std::optional<std::uint64_t> memory_peak;
    bool oom = false;
};

// One held tree. Every call is made by the thread that owns the child.
class tree {
public:
    virtual ~tree() = default;

    // Is anything of the tree alive, other than the main process if it is a zombie?
    virtual result<bool> alive() = 0;
    // Sends `sig`, then SIGCONT, to every process of the tree.
    virtual void signal(int sig) = 0;
    // SIGKILLs every process of the tree; returns the mechanism that did it.
    virtual result<std::string> kill() = 0;
    // The mechanism kill() is going to use ("cgroup.kill", "freeze-kill", "killpg").
    [[nodiscard]] virtual std::string mechanism() const = 0;
    // Waits until alive() is false; false when `deadline` passed first.
    virtual result<bool> wait_empty(deadline_t deadline) = 0;
    // How many processes are left (0 when the tree is empty).
    virtual int remaining() = 0;
    // The pids of the tree's live processes, cgrun's own helpers (a scope's sentinel) not
    // among them.
    virtual std::vector<pid_t> members() = 0;
    // Adds what can be read now (cpu.stat, memory.peak, memory.events) to `u`.
    virtual void sample(usage& u) = 0;
    // The CPU time the whole tree has used so far (all its processes, live and exited), or
    // nullopt where the method cannot tell while the tree runs (no cgroup).
    virtual std::optional<std::chrono::microseconds> cpu_usage() { return std::nullopt; }
    // -1, or memory.events opened for poll(POLLPRI).
    virtual unique_fd open_memory_events() { return {}; }
    // Lets go of whatever kept the tree's accounting readable after it emptied (the scope's
    // sentinel). Called once the final figures are sampled.
    virtual void unhold() {}
    // The tree is empty: removes what was created for it (the leaf; the scope is collected).
    // Idempotent; an error leaves the rest for a later call.
    virtual result<void> finish() { return {}; }
    // True while finish() has something left to remove.
    [[nodiscard]] virtual bool holds_resources() const { return false; }
    // The caller keeps what the main process left running (keep_orphans): stop owning it,
    // and make sure no later sweep of stale leaves takes it for a crashed run's. Returns
    // where the tree lives now if that changed; an error when the tree is handed over but
    // not protected (the caller is told: never silently weaker).
    virtual result<std::optional<std::string>> hand_over() { return std::optional<std::string>(); }
    // Forgets the tree without touching it (detach()).
    virtual void abandon() noexcept {}
    // What the spawner-death guard needs to kill the tree (and remove what is ours).
    [[nodiscard]] virtual guard_target guard() const = 0;
};

// What a method's placement asks for, besides the options.
struct place_request {
    const options& opts;
    const std::vector<limit_setting>& limits;
    main_process* main; // where the tree's main process will live (pgroup reads it, subreaper sets `wait`)
};

// The refusal of a method without a cgroup (`m`) asked for what only a cgroup can do: a
// limit (-p) or a CPU-time limit. nullopt when the request asks for neither.
inline std::optional<error> needs_cgroup(const place_request& r, std::string_view m)
{
    if (!r.limits.empty())
        return error::make(errc::controller_unavailable, r.limits.front().given() + " needs the " +
                                                             r.limits.front().controller + " controller, and the " +
                                                             std::string(m) + " method has no cgroup");
    if (r.opts.cpu_time)
        return error::make(errc::controller_unavailable,
                           "the CPU-time limit needs a cgroup (scope or cgroup method) to measure the tree while it "
                           "runs, and the " + std::string(m) + " method has none" +
                               (r.opts.method == method::automatic ? " (neither scope nor cgroup could be had)" : ""));
    return std::nullopt;
}

// A child placed in its tree, not yet released to exec.
struct placed {
    spawned process;
    std::unique_ptr<tree> held;
    std::optional<std::string> unit;   // scope
    std::optional<std::string> cgroup; // scope, cgroup
};

// One function per method (method_scope.cpp, method_cgroup.cpp, method_subreaper.cpp,
// method_pgroup.cpp). Each either returns a child held in a live tree, or an error with
// nothing left behind.
result<placed> place_in_scope(const place_request& r);
result<placed> place_in_cgroup(const place_request& r);
result<placed> place_in_subreaper(const place_request& r);
result<placed> place_in_pgroup(const place_request& r);

struct method_entry {
    method m;
    result<placed> (*place)(const place_request&);
};
// scope, cgroup, subreaper, pgroup: auto's order.
extern const method_entry default_methods[4];
// cgroup, scope, subreaper, pgroup: auto's order inside a cgroup delegated to the caller.
extern const method_entry delegated_methods[4];

// The table place() walks for `o`: delegated_methods when auto runs in a cgroup systemd
// delegated to the caller (and no cgroup parent is given; `where.reason` then says so),
// else default_methods.
std::span<const method_entry> methods_for(const options& o, placement& where);

// Errors that every other method would hit as well (exec errors, bad arguments, a limit
// that needs a missing controller): auto does not fall back on them.
bool is_fatal(const error& e);

// Places the child: with `wanted`, or for auto with the first method of `table` that works,
// recording in `where` the method used and why each one before it could not be had. An
// explicit method never falls back.
result<placed> place(std::span<const method_entry> table, method wanted, const place_request& r,
                     placement& where);

} // namespace cgrun::detail
