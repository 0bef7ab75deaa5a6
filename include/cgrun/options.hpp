#pragma once

#include <cgrun/export.hpp>

#include <csignal>
#include <sys/types.h>

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cgrun {

// Words used throughout: a *method* is how a tree is held (this enum); the *placement* is
// where one child's tree ended up (unit, cgroup, process group); a *mechanism* is how a tree
// was killed ("cgroup.kill", "freeze-kill", "subreaper", "killpg" in kill_info).
enum class method {
    // scope, else cgroup, else subreaper, else pgroup; each step down is recorded. Inside a
    // cgroup systemd delegated to the caller (Delegate=yes: xattr trusted.delegate or
    // user.delegate on the own cgroup) cgroup comes first, then scope (placement::reason).
    automatic,
    scope,     // a transient systemd scope per child (sd-bus StartTransientUnit)
    cgroup,    // a cgroup v2 directory per child under a delegated parent
    pgroup,    // a process group only: setsid/double-fork escapees are NOT contained
    // No cgroup: a small reaper process per child (PR_SET_CHILD_SUBREAPER) starts the command,
    // so setsid/double-fork escapees are re-parented to it, and it kills and reaps them all.
    // One extra process per child (a fork of the spawner); no limits, no memory figures.
    subreaper,
};

[[nodiscard]] CGRUN_EXPORT std::string_view to_string(method m) noexcept;
// "auto", "scope", "cgroup", "subreaper", "pgroup"; nullopt for anything else.
[[nodiscard]] CGRUN_EXPORT std::optional<method> method_from_string(std::string_view s) noexcept;

// Which systemd manager the scope method talks to.
enum class bus_kind {
    automatic, // the system manager as root, the user manager otherwise
    system,
    user,
};

// What one of the child's standard streams is connected to.
struct stdio_spec {
    enum class kind { inherit, null, pipe, fd };
    kind mode = kind::inherit;
    int fd = -1; // for kind::fd: duplicated into the child, not owned

    static stdio_spec inherit() { return {}; }
    static stdio_spec null() { return {kind::null, -1}; }
    static stdio_spec pipe() { return {kind::pipe, -1}; }
    static stdio_spec from_fd(int fd) { return {kind::fd, fd}; }
};

// How a tree is stopped on timeout, terminate() or when orphans are killed.
struct kill_policy {
    // Sent to every process of the tree (followed by SIGCONT) when grace > 0.
    int signal = SIGTERM;
    // How long the tree may take to exit after `signal`; 0 = SIGKILL the tree at once.
    std::chrono::milliseconds grace{0};
    // Upper bound on waiting for the tree to be empty after SIGKILL; a task stuck in
    // uninterruptible sleep yields a report with remaining_processes > 0, not a hang.
    std::chrono::milliseconds kill_wait{5000};
};

// A resource limit, as a systemd property name and value, with systemd's value syntax
// (systemd.resource-control(5)): {"MemoryMax", "1.5G"}, {"TasksMax", "10%"}, {"CPUQuota", "0.5%"}.
struct limit {
    std::string name;
    std::string value;
};

// The names a `limit` may have.
inline constexpr std::array<std::string_view, 10> limit_names{
    "MemoryMax", "MemoryHigh", "MemoryLow", "MemoryMin", "MemorySwapMax",
    "TasksMax",  "CPUQuota",   "CPUWeight", "IOWeight",  "AllowedCPUs"};

// Knobs of the scope method only.
struct scope_options {
    bus_kind bus = bus_kind::automatic;
    std::string unit;  // scope name; empty = generated ("cgrun-<cmd>-<pid>-<n>.scope")
    std::string slice; // empty = the manager's default
    std::chrono::milliseconds bus_timeout{3000}; // per D-Bus call and for the start job
    // Extra time systemd waits past `timeout` + kill.grace before it stops the scope itself:
    // the backstop for a spawner that died without stopping its tree.
    std::chrono::milliseconds backstop_margin{1000};
    // The scope's Description (what `systemctl status` shows); empty = "cgrun: <argv>".
    std::string description;
};

// Knobs of the cgroup method only.
struct cgroup_options {
    // Parent of the leaves, as a path inside the cgroup2 hierarchy ("/a/b"); it must exist
    // (cgrun creates only its own leaves). Empty = the caller's own cgroup (or, in the leaf
    // of the setup step, that leaf's parent), looked up by the process's first spawn and
    // kept, with systemd's delegation marks on it: looked up again after a fork, after a
    // setup_cgroup() of this process, and when no leaf can be made there any more (the
    // caller was moved and the cgroup removed, or it is no longer the caller's to write).
    std::string parent;
    // The parent of the leaves is one transient systemd scope with Delegate=yes per spawning
    // process, "cgrun-<pid>.scope", started by its first spawn with this option: a unit
    // that owns all its children (reported as `unit`), at the cost of one StartTransientUnit
    // per process instead of one per child. The spawner-death guard lives in its sub-leaf
    // "guard" and holds it: when the spawner exits (or dies) the guard kills what is left,
    // exits, and systemd removes the emptied scope. Needs spawner_guard and a reachable
    // manager (scope.bus, scope.slice, scope.bus_timeout apply); excludes `parent`.
    bool delegated_scope = false;
};

// Who the command runs as, set in the child just before exec (after nice, before chdir).
// Anything set needs root unless it is what the caller is already: spawn() fails with
// errc::invalid_argument otherwise and starts nothing. The command stays in the same tree
// (scope, cgroup, reaper) as any other.
struct identity {
    std::optional<uid_t> uid;
    // nullopt with uid: the user's primary group from the passwd entry (as systemd's
    // User=); a uid without a passwd entry then fails (systemd refuses it too).
    std::optional<gid_t> gid;
    // Supplementary groups; nullopt = those of the uid's passwd entry with `gid`
    // (getgrouplist, as initgroups), or none when the uid has no entry or only gid is set.
    std::optional<std::vector<gid_t>> groups;
};

struct options {
    // argv[0] is looked up in PATH (of `env` if given, else of the caller) unless it has a '/'.
    std::vector<std::string> argv;
    // Complete environment of the child; nullopt = the caller's environment.
    std::optional<std::vector<std::string>> env;
    // Working directory of the child; empty = the caller's. Entered with the rights of
    // `run_as`; one that cannot be entered fails spawn() with errc::exec_failed.
    std::string cwd;
    // Nice value of the command (-20..19, setpriority before `run_as` takes effect: a
    // negative one needs root); nullopt = inherited.
    std::optional<int> nice;
    identity run_as;
    std::array<stdio_spec, 3> stdio{};
    // Descriptors the child inherits under the same numbers (all others >= 3 are closed).
    std::vector<int> inherit_fds;

    // Wall-clock limit for the whole tree, counted from spawn; nullopt = none.
    std::optional<std::chrono::milliseconds> timeout;
    // Limit on the CPU time of the whole tree (all its processes, live and exited, user and
    // system, as the tree's cgroup counts it in cpu.stat; no controller needed); nullopt =
    // none. When it is used up the tree is stopped as at a timeout (kill policy) and the
    // report says cpu_time_exceeded (timed_out stays false). Checked by wait()/wait_for()
    // at least every 10 ms, more often as the limit nears; the tree may overrun it by what
    // its processes use between two checks and until the kill (see README). Needs a cgroup:
    // spawn() fails with errc::controller_unavailable under subreaper and pgroup.
    std::optional<std::chrono::milliseconds> cpu_time;
    kill_policy kill{};
    // When the main child exits by itself: kill what it left running (default) or keep it.
    bool keep_orphans = false;

    // Kill the tree if the spawning process dies (SIGKILL, crash, OOM kill, exec) while it
    // still owns it. See "spawner-death guard" in child.hpp.
    bool spawner_guard = true;

    // How the tree is held; see `method`.
    cgrun::method method = cgrun::method::automatic;
    scope_options scope;
    cgroup_options cgroup;

    std::vector<limit> limits;
};

} // namespace cgrun
