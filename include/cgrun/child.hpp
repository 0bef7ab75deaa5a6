#pragma once

#include <cgrun/export.hpp>

#include <cgrun/error.hpp>
#include <cgrun/options.hpp>
#include <cgrun/report.hpp>
#include <cgrun/unique_fd.hpp>

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace cgrun {

namespace detail {
struct child_state;
}

// Where a child's tree lives.
struct placement {
    method used = method::pgroup;
    std::vector<fallback> fallbacks;   // methods tried first (auto) and why they were not used
    // Why auto took `used` first, when not by its usual order: the caller's own cgroup is
    // delegated to it (systemd's Delegate=yes), so the cgroup method comes before scope.
    std::optional<std::string> reason;
    std::optional<std::string> unit;   // scope method; cgroup with cgroup.delegated_scope: that scope;
                                       // cgroup chosen by auto in a Delegate=yes unit: that unit
    std::optional<std::string> cgroup; // path inside the cgroup2 hierarchy (scope, cgroup)
    pid_t pgid = -1;
};

// The spawner-death guard (options::spawner_guard, on by default). The first spawn() of a
// process starts one small helper process for it, "cgrun-guard": a grandchild (never our
// child: no zombie, no SIGCHLD for us when it ends), in its own session, holding a pidfd of
// the spawning process and, for each live tree, a descriptor of its cgroup (or, for pgroup,
// of its main process). When the spawner dies by any means (SIGKILL, crash, OOM kill) or
// exec()s, the guard writes cgroup.kill of every tree still registered (killpg for pgroup),
// waits for them to empty (at most 2 s) and removes the cgroup leaves; systemd collects the
// emptied scopes. Measured on the host: every process gone ~1 ms after the SIGKILL. A tree
// leaves the guard when its run is over, when it is detach()ed, or when keep_orphans hands
// what the command left running to the caller. A process forked from the spawner gets a
// guard of its own at its first spawn; the parent's guard covers only the parent's trees.
// Cost: one fork() at the first spawn (it copies the page tables: more for a large spawner),
// one sendmsg() per spawn and one per finished run; the guard itself uses no CPU while it
// waits. It sets no signal handler, no atfork handler and nothing process-wide in the
// spawner. Limits: the guard can be killed like any process (then the trees are unguarded,
// as without it; a later spawn starts a new one); pgroup trees are killed by process group
// only, so setsid escapees are beyond it as they are beyond pgroup itself.
//
// A running, contained process tree. Move-only.
//
// Destroying a child that has not finished kills its whole tree (SIGKILL), waits for it
// to be empty, reaps it and removes its cgroup; detach() opts out.
// One child may be used by one thread at a time; different children are independent.
class CGRUN_EXPORT child {
public:
    child(child&&) noexcept;
    child& operator=(child&&) noexcept;
    child(const child&) = delete;
    child& operator=(const child&) = delete;
    ~child();

    [[nodiscard]] pid_t pid() const noexcept;
    // Readable (POLLIN) once the main process exited: hook it into an event loop, then
    // call wait_for(0ms). Owned by the child. Under method::subreaper it is not a pidfd but
    // the socket on which the reaper reports the exit (the main process is the reaper's
    // child): poll it, do not waitid() or pidfd_send_signal() it.
    [[nodiscard]] int pidfd() const noexcept;
    // -1, or an fd (memory.events of the child's cgroup) that signals POLLPRI when the tree
    // hits its memory limit or is OOM-killed. Event loops that watch pidfd() should watch
    // it too and call wait_for(0ms) when it fires, so the report can record the OOM kill
    // and the memory peak before systemd removes an emptied scope.
    [[nodiscard]] int memory_events_fd() const noexcept;
    [[nodiscard]] const cgrun::placement& placement() const noexcept;
    // When the timeout of the options expires (counted from spawn), if there is one, or,
    // with a cpu_time limit, when its usage is to be checked next (at most 10 ms ahead): an
    // event loop should call wait_for(0ms) then.
    [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> deadline() const noexcept;

    // Parent ends of stdio streams configured as stdio_spec::pipe() (invalid otherwise).
    // Taking one transfers its ownership to the caller.
    unique_fd take_stdin() noexcept;
    unique_fd take_stdout() noexcept;
    unique_fd take_stderr() noexcept;

    // Blocks until the run is over: the main process exited (what it left running is
    // killed unless keep_orphans) or the timeout of the options passed (the tree is stopped
    // by the kill policy; timed_out is set). Calling it again returns the same report.
    result<run_report> wait();
    // Like wait(), but gives up after `d` and returns nullopt if the run is not over.
    result<std::optional<run_report>> wait_for(std::chrono::milliseconds d);

    // Stops the tree now with the kill policy (graceful signal, grace, then SIGKILL).
    result<run_report> terminate();
    // SIGKILLs the tree now.
    result<run_report> kill();

    // Gives up ownership: the tree keeps running, and its cgroup or scope is left in place.
    void detach() noexcept;

private:
    friend CGRUN_EXPORT result<child> spawn(options opts);
    explicit child(std::unique_ptr<detail::child_state> s) noexcept;
    std::unique_ptr<detail::child_state> s_;
};

// Starts opts.argv held by opts.method. Errors: exec_not_found,
// exec_not_executable, exec_failed, invalid_argument, and for an explicit method that
// cannot be had cgroup2_unavailable, cgroup_not_delegated, systemd_unavailable,
// scope_failed, controller_unavailable.
CGRUN_EXPORT result<child> spawn(options opts);

// spawn() + wait(). A spawn error is returned as an error; a timeout is not an error.
CGRUN_EXPORT result<run_report> run(options opts);


} // namespace cgrun
