#include "check.hpp"
#include "command_line.hpp"
#include "duration.hpp"
#include "exit_status.hpp"
#include "output.hpp"
#include "terminal.hpp"

#include <cgrun/cgrun.hpp>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <fnmatch.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace {

using namespace cgrun;
using namespace cgrun::tool;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// Blocks the signals that stop the tree, plus SIGCHLD (to notice a stopped command), and
// returns a signalfd for them. Blocking must happen before spawn() so that no signal is
// lost in between; the library resets the child's mask and dispositions. A stop signal
// whose disposition is SIG_IGN (nohup, a background job of a non-interactive shell) is
// left alone, as the caller meant it.
result<unique_fd> catch_signals()
{
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
        struct sigaction current {};
        if (::sigaction(sig, nullptr, &current) == 0 && current.sa_handler == SIG_IGN)
            continue;
        sigaddset(&set, sig);
    }
    sigaddset(&set, SIGCHLD);
    sigset_t blocked = set;
    // EPIPE on writing the report beats dying of SIGPIPE after the run; SIGTTOU would
    // stop a background cgrun that takes the terminal back.
    sigaddset(&blocked, SIGPIPE);
    sigaddset(&blocked, SIGTTOU);
    if (int err = ::pthread_sigmask(SIG_BLOCK, &blocked, nullptr))
        return error::from_errno(err, "pthread_sigmask");
    int fd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0)
        return error::from_errno(errno, "signalfd");
    return unique_fd(fd);
}

bool stopped(const child& c)
{
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(c.pid()), &info, WSTOPPED | WNOHANG) == 0 &&
           info.si_pid != 0 && info.si_code == CLD_STOPPED;
}

std::optional<int> read_signal(int fd)
{
    signalfd_siginfo info{};
    for (;;) {
        ssize_t n = ::read(fd, &info, sizeof info);
        if (n == static_cast<ssize_t>(sizeof info))
            return static_cast<int>(info.ssi_signo);
        if (n < 0 && errno == EINTR)
            continue;
        return std::nullopt;
    }
}

// How long to wait in ppoll(): up to the deadline, in slices of at most 50 ms because the
// kernel lets poll timeouts fire up to 0.1% late (at most 100 ms).
std::optional<timespec> poll_timeout(std::optional<steady_clock::time_point> deadline)
{
    if (!deadline)
        return std::nullopt;
    auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - steady_clock::now());
    // Past the deadline the library is stopping the tree; ask again shortly.
    if (left.count() <= 0)
        left = milliseconds(10);
    left = std::min<std::chrono::nanoseconds>(left, milliseconds(50));
    return timespec{0, static_cast<long>(left.count())};
}

// Waits for the run to be over, the deadline or the used-up CPU time (both judged by the
// library through wait_for(0)), or a stop signal (then terminate(); the signal goes to
// `caught`).
result<run_report> supervise(child& c, int signal_fd, terminal_handoff& terminal, std::optional<int>& caught)
{
    bool main_exited = false;
    for (;;) {
        // The --timeout deadline, or the next check of --cpu-time: it moves with each check.
        std::optional<steady_clock::time_point> deadline = c.deadline();
        std::array<pollfd, 3> fds{{{main_exited ? -1 : c.pidfd(), POLLIN, 0},
                                   {signal_fd, POLLIN, 0},
                                   {c.memory_events_fd(), POLLPRI, 0}}};
        auto wait = main_exited ? std::optional<timespec>(timespec{0, 10'000'000}) : poll_timeout(deadline);
        int n = ::ppoll(fds.data(), fds.size(), wait ? &*wait : nullptr, nullptr);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return error::from_errno(errno, "poll");
        }
        if (fds[1].revents & POLLIN) {
            while (auto sig = read_signal(signal_fd)) {
                if (*sig != SIGCHLD) {
                    caught = sig;
                    terminal.take_back();
                    return c.terminate();
                }
                if (!main_exited && stopped(c))
                    terminal.relay_stop();
            }
        }
        if (n == 0 || fds[0].revents != 0 || fds[2].revents != 0) {
            auto done = c.wait_for(milliseconds(0));
            if (!done)
                return done.error();
            if (*done)
                return std::move(**done);
            // The main process is gone but the run is not over yet (orphans being
            // stopped): keep polling the signalfd only, the pidfd stays readable.
            if (fds[0].revents != 0)
                main_exited = true;
        }
    }
}

void describe_containment(const placement& info, method requested)
{
    for (const auto& f : info.fallbacks)
        warn("not using " + std::string(to_string(f.tried)) + ": " + f.reason);
    std::string line = "using " + std::string(to_string(info.used));
    if (info.unit)
        line += " " + *info.unit;
    if (info.cgroup)
        line += (info.unit ? " in " : " ") + *info.cgroup;
    if (info.used == method::pgroup)
        line += " " + std::to_string(info.pgid);
    if (requested != method::automatic)
        line += " (as requested)";
    else if (info.fallbacks.empty())
        line += info.reason ? " (first choice of auto: " + *info.reason + ")" : " (first choice of auto)";
    else if (info.reason)
        line += " (auto's order: " + *info.reason + ")";
    if (info.used == method::pgroup)
        line += "; setsid escapees are not contained";
    warn(line);
}

// Never silently weaker: auto ended where setsid() escapes, and the user did not ask for it.
void warn_weak_containment(const placement& info)
{
    std::string why;
    for (const auto& f : info.fallbacks)
        why += (why.empty() ? "" : "; ") + std::string(to_string(f.tried)) + ": " + f.reason;
    warn("warning: no cgroup could be had, processes that call setsid() will escape (" + why +
         "); -q silences this");
}

void describe_end(const run_report& r, const options& opts, std::optional<int> caught)
{
    std::string line;
    if (caught)
        line = "got SIG" + signal_name(*caught);
    else if (r.timed_out)
        line = "timed out after " + format_duration(*opts.timeout);
    else if (r.cpu_time_exceeded)
        line = "used up the CPU time of " + format_duration(*opts.cpu_time);
    else if (r.signal)
        line = "command died of signal " + signal_name(*r.signal);
    else if (r.exit_code)
        line = "command exited with status " + std::to_string(*r.exit_code);
    if (r.kill) {
        line += "; stopped the tree with " + r.kill->mechanism;
        if (r.kill->graceful_signal)
            line += ", " + signal_name(*r.kill->graceful_signal) + " first" +
                    (r.kill->escalated ? ", then KILL" : "");
    }
    if (r.oom_killed)
        line += "; the OOM killer struck";
    if (!line.empty())
        warn(line);
}

int report_written(json_file& json, const run_report& r, int status)
{
    if (!json.enabled())
        return status;
    if (auto w = json.write(to_json(r)); !w) {
        warn(w.error().message());
        return exit_internal;
    }
    return status;
}

// --on-leak=fail: one line per leftover that is not allowed (up to a cap) and a summary.
// True when there is one. Leftovers beyond the described ones cannot be matched: they count.
bool report_leaks(const run_report& r, const std::vector<std::string>& allowed)
{
    constexpr std::size_t max_lines = 20;
    std::size_t leaked = 0, shown = 0;
    for (const auto& l : r.leftovers) {
        std::string line;
        for (const auto& a : l.command)
            line += (line.empty() ? "" : " ") + a;
        bool ok = false;
        for (const auto& pattern : allowed)
            ok = ok || ::fnmatch(pattern.c_str(), line.c_str(), 0) == 0;
        if (ok)
            continue;
        ++leaked;
        if (shown++ < max_lines)
            warn("left running: pid " + std::to_string(l.pid) + " (" + line + ")" +
                 (l.escaped_via ? ", escaped via " + *l.escaped_via : ""));
    }
    std::size_t undescribed = static_cast<std::size_t>(r.leftovers_total) - r.leftovers.size();
    leaked += undescribed;
    if (leaked == 0)
        return false;
    std::string more = shown > max_lines ? " (" + std::to_string(shown - max_lines) + " not listed)" : "";
    if (undescribed > 0)
        more += ", " + std::to_string(undescribed) + " of them beyond the report's list";
    std::string who = r.command.empty() ? "the command" : r.command[0];
    warn(who + " left " + std::to_string(leaked) + " process(es) running" + more +
         "; they were killed (exit status 123)");
    return true;
}

int run_command(const command_line& cmd, json_file& json)
{

    auto signals = catch_signals();
    if (!signals) {
        warn(signals.error().message());
        return exit_internal;
    }

    auto started = spawn(cmd.opts);
    if (!started) {
        const auto& err = started.error();
        warn(err.message());
        auto report = failed_report(cmd.opts.argv, err.message());
        return report_written(json, report, spawn_failure_status(err.code));
    }
    child& c = *started;
    if (cmd.verbose)
        describe_containment(c.placement(), cmd.opts.method);
    else if (!cmd.quiet && cmd.opts.method == method::automatic && c.placement().used == method::pgroup)
        warn_weak_containment(c.placement());

    auto terminal = terminal_handoff::begin(c.placement().pgid);
    std::optional<int> caught;
    auto finished = supervise(c, signals->get(), terminal, caught);
    terminal.take_back();
    if (!finished) {
        std::string message = finished.error().message();
        warn(message);
        // Started, but its end is unknown: the report says what ran, and termination is null.
        auto report = failed_report(cmd.opts.argv, message);
        report.used = c.placement().used;
        report.fallbacks = c.placement().fallbacks;
        report.method_reason = c.placement().reason;
        report.unit = c.placement().unit;
        report.cgroup = c.placement().cgroup;
        report.pid = c.pid();
        return report_written(json, report, exit_internal);
    }
    const run_report& r = *finished;
    if (cmd.verbose)
        describe_end(r, cmd.opts, caught);
    // The run is over but stopping the tree went wrong: say so, keep the command's status.
    std::string n = std::to_string(r.remaining_processes);
    if (r.error)
        warn(*r.error);
    else if (r.remaining_processes > 0 && !cmd.opts.keep_orphans)
        warn(n + " process(es) of the tree could not be killed");
    else if (r.remaining_processes > 0 && cmd.verbose)
        warn("left " + n + " process(es) running");
    int status = exit_status(r, caught, cmd.preserve_status);
    if (cmd.on_leak == leak_policy::fail && status == 0 && !r.timed_out && !r.cpu_time_exceeded && !r.cancelled)
        if (report_leaks(r, cmd.allowed_leaks))
            status = exit_leaked;
    return report_written(json, r, status);
}

} // namespace

int main(int argc, char** argv)
{
    std::vector<std::string_view> args(argv, argv + argc);
    auto parsed = parse_command_line(args);
    if (parsed.problem) {
        warn(*parsed.problem);
        return exit_internal;
    }
    command_line& cmd = parsed.cmd;
    if (cmd.what == action::run)
        if (auto problem = resolve_run_options(cmd, environ)) {
            warn(*problem);
            return exit_internal;
        }
    switch (cmd.what) {
    case action::help:
        std::fwrite(help_text().data(), 1, help_text().size(), stdout);
        return std::fflush(stdout) == 0 ? 0 : exit_internal;
    case action::version:
        std::fputs("cgrun " CGRUN_VERSION "\n", stdout);
        return std::fflush(stdout) == 0 ? 0 : exit_internal;
    default:
        break;
    }
    // --json FILE is opened (created) before anything runs: a path that cannot be written
    // is an error before the command starts, not after it ran.
    auto opened = json_file::open_optional(cmd.json_path);
    if (!opened) {
        warn(opened.error().message());
        return exit_internal;
    }
    json_file json = std::move(*opened);
    if (cmd.what == action::check)
        return run_check(cmd, json);
    if (cmd.what == action::setup)
        return run_setup(cmd, json);
    return run_command(cmd, json);
}
