#pragma once

#include <cgrun/export.hpp>

#include <cgrun/options.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cgrun {

// A containment method that was tried and not used, and why.
struct fallback {
    method tried;
    std::string reason;
};

// How the tree was stopped, when cgrun had to stop it.
struct kill_info {
    std::string mechanism;             // "cgroup.kill", "freeze-kill" or "killpg"
    std::optional<int> graceful_signal; // sent first when the policy has a grace period
    bool escalated = false;            // SIGKILL was needed after the grace period
};

// A process of the tree that was still running when the run ended: left behind by the main
// process when it exited by itself, or alive when a timeout or cancel stopped the tree.
struct leftover {
    pid_t pid = -1;
    std::vector<std::string> command; // argv from /proc/PID/cmdline, else [comm]
    // It had left the main process's session (setsid) or process group (setpgid).
    bool escaped = false;
    std::optional<std::string> escaped_via; // "setsid" or "setpgid" when escaped
    double age_ms = 0;                      // how long it had run (10 ms resolution)
};

// At most this many leftovers are described; leftovers_total counts all of them.
inline constexpr std::size_t max_leftovers = 100;

struct run_report {
    std::vector<std::string> command;
    // The method that held the tree; method::automatic only when nothing was started (no
    // method was chosen; the JSON says null then).
    method used = method::automatic;
    std::vector<fallback> fallbacks;
    // Why auto chose its first method out of its usual order (placement::reason), else nullopt.
    std::optional<std::string> method_reason;
    std::optional<std::string> unit;   // scope name (scope method; the delegated scope, cgroup method)
    std::optional<std::string> cgroup; // path inside the cgroup2 hierarchy
    pid_t pid = -1;
    // Wall-clock time at which the command was started; nullopt when nothing was started.
    std::optional<std::chrono::system_clock::time_point> start_time;

    std::optional<int> exit_code; // set when the main child exited
    std::optional<int> signal;    // set when the main child died of a signal
    bool timed_out = false;
    bool cpu_time_exceeded = false; // the cpu_time limit was used up
    bool cancelled = false; // stopped by terminate()/kill() before it ended
    std::optional<kill_info> kill;

    // Processes of the tree still alive when the report was made: 0 after cleanup,
    // more with keep_orphans or when a task could not die in time.
    int remaining_processes = 0;

    // What was still running when the main process exited (then left behind, whatever the
    // policy did with it) or when the tree was stopped; cgrun's own helpers never count.
    std::vector<leftover> leftovers;
    int leftovers_total = 0;

    double wall_time_ms = 0;
    double cpu_user_ms = 0;
    double cpu_system_ms = 0;
    std::optional<std::uint64_t> memory_peak_bytes; // null without the memory controller
    bool oom_killed = false;

    std::optional<std::string> error;
};

// How a run ended, as one value. When several apply, the first of this order wins:
// start_failed (nothing was started), cpu_time (the cpu_time limit was used up), timeout,
// cancelled, oom_killed (the main process died of a signal and the OOM killer killed a
// process of the tree), signaled, exited.
enum class termination { exited, signaled, timeout, cpu_time, cancelled, oom_killed, start_failed };

// nullopt only when a started run's end is unknown (its main process was not reaped: the
// report carries an error).
[[nodiscard]] CGRUN_EXPORT std::optional<termination> termination_of(const run_report& r) noexcept;
// "exited", "signaled", "timeout", "cpu-time", "cancelled", "oom-killed", "start-failed".
[[nodiscard]] CGRUN_EXPORT std::string_view to_string(termination t) noexcept;

// One JSON object (schema: doc/report-schema.md, doc/report.schema.json). version is 1.
[[nodiscard]] CGRUN_EXPORT std::string to_json(const run_report& r);

// RFC 3339 in UTC with milliseconds: "2024-05-01T12:34:56.789Z".
[[nodiscard]] CGRUN_EXPORT std::string rfc3339_utc(std::chrono::system_clock::time_point t);

// A report for a run that failed before anything started: used is method::automatic (no
// method), pid -1, error set.
[[nodiscard]] CGRUN_EXPORT run_report failed_report(std::vector<std::string> command, std::string error);

// Name of a signal without the "SIG" prefix ("TERM"), or its number as text.
[[nodiscard]] CGRUN_EXPORT std::string signal_name(int sig);
// Accepts "TERM", "SIGTERM", "term" or "15"; nullopt otherwise.
[[nodiscard]] CGRUN_EXPORT std::optional<int> signal_from_string(std::string_view s);

} // namespace cgrun
