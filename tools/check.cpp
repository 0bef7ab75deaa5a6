#include "check.hpp"

#include "exit_status.hpp"
#include "output.hpp"

#include <cgrun/cgrun.hpp>

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace cgrun::tool {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// The escapee leaves the session of the main process (so killpg misses it) and reports
// its pid on stdout before it becomes a long sleep.
const std::vector<std::string> escaping_tree{
    "/bin/sh", "-c", "setsid sh -c 'echo $$; exec sleep 300' & exec sleep 300"};

constexpr milliseconds proof_timeout{500};
constexpr milliseconds pid_wait{3000};
constexpr milliseconds death_wait{1000};

// glibc 2.36's <sys/pidfd.h> lacks extern "C" (fixed in 2.37), so its functions do not
// link from C++: call the syscalls directly.
int open_pidfd(pid_t pid)
{
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

void kill_by_pidfd(int pidfd)
{
    (void)::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
}

struct proof {
    method tried = method::automatic;
    bool attempted = false;
    bool ok = false;
    std::string detail;
    std::optional<pid_t> escapee;
    std::optional<run_report> report;
};

int remaining_ms(steady_clock::time_point deadline)
{
    auto left = std::chrono::ceil<milliseconds>(deadline - steady_clock::now()).count();
    return left < 0 ? 0 : static_cast<int>(left);
}

// Polls one fd for POLLIN for at most `limit`.
bool readable_within(int fd, milliseconds limit)
{
    auto deadline = steady_clock::now() + limit;
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        int n = ::poll(&p, 1, remaining_ms(deadline));
        if (n < 0 && errno == EINTR)
            continue;
        return n > 0;
    }
}

std::optional<pid_t> read_pid_line(int fd, milliseconds limit)
{
    auto deadline = steady_clock::now() + limit;
    std::string text;
    while (text.find('\n') == std::string::npos) {
        if (!readable_within(fd, milliseconds(remaining_ms(deadline))))
            return std::nullopt;
        char buf[64];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    pid_t pid = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), pid);
    if (ec != std::errc{} || ptr == text.data() || pid <= 0)
        return std::nullopt;
    return pid;
}

proof prove(method m, const options& base)
{
    proof p;
    p.tried = m;
    p.attempted = true;

    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) < 0) {
        p.detail = error::from_errno(errno, "pipe2").message();
        return p;
    }
    unique_fd pid_reader(ends[0]);
    unique_fd pid_writer(ends[1]);

    options o;
    o.argv = escaping_tree;
    o.stdio = {stdio_spec::null(), stdio_spec::from_fd(pid_writer.get()), stdio_spec::null()};
    o.timeout = proof_timeout;
    o.method = m;
    o.scope.bus = base.scope.bus;
    o.scope.slice = base.scope.slice;
    o.cgroup.parent = base.cgroup.parent;
    o.scope.bus_timeout = base.scope.bus_timeout;

    auto started = spawn(std::move(o));
    pid_writer.reset();
    if (!started) {
        p.detail = started.error().message();
        return p;
    }

    unique_fd escapee_fd;
    p.escapee = read_pid_line(pid_reader.get(), pid_wait);
    if (p.escapee) {
        int fd = open_pidfd(*p.escapee);
        if (fd >= 0)
            escapee_fd.reset(fd);
    }

    auto finished = started->wait();
    if (!finished) {
        p.detail = finished.error().message();
    } else {
        p.report = *finished;
        if (!p.escapee)
            p.detail = "the test tree did not report its escapee's pid";
        else if (!escapee_fd)
            p.detail = "the escapee " + std::to_string(*p.escapee) + " was gone before the deadline";
        else if (!finished->timed_out)
            p.detail = "the test tree ended before its deadline";
        else if (!readable_within(escapee_fd.get(), death_wait))
            p.detail = "the setsid escapee " + std::to_string(*p.escapee) + " survived";
        else {
            p.ok = true;
            p.detail = "the setsid escapee " + std::to_string(*p.escapee) + " was killed";
        }
    }
    // A proof must not leave its escapee behind, whatever went wrong.
    if (escapee_fd && !p.ok)
        kill_by_pidfd(escapee_fd.get());
    return p;
}

std::string yes_no(bool ok, const std::optional<std::string>& why)
{
    if (ok)
        return "yes";
    return why ? "no (" + *why + ")" : "no";
}

std::string text_or(const std::optional<std::string>& s, std::string_view missing)
{
    return s ? *s : std::string(missing);
}

void row(std::FILE* out, std::string_view name, const std::string& value)
{
    std::fprintf(out, "%-20.*s %s\n", static_cast<int>(name.size()), name.data(), value.c_str());
}

nlohmann::json optional_json(const std::optional<std::string>& s)
{
    return s ? nlohmann::json(*s) : nlohmann::json(nullptr);
}

nlohmann::json host_json(const host_info& h)
{
    return {
        {"cgroup2_mount", optional_json(h.cgroup2_mount)},
        {"own_cgroup", optional_json(h.own_cgroup)},
        {"cgroup_kill", h.cgroup_kill},
        {"delegated_parent", optional_json(h.delegated_parent)},
        {"delegated_parent_error", optional_json(h.delegated_parent_error)},
        {"delegated", h.delegated},
        {"delegation_marker", optional_json(h.delegation_marker)},
        {"clone_into_cgroup", h.clone_into_cgroup},
        {"clone_into_cgroup_error", optional_json(h.clone_into_cgroup_error)},
        {"systemd_reachable", h.systemd_reachable},
        {"systemd_error", optional_json(h.systemd_error)},
        {"controllers", h.controllers},
        {"setup_needed", h.setup_needed ? nlohmann::json{{"from", h.setup_needed->from},
                                                         {"to", h.setup_needed->to},
                                                         {"processes", h.setup_needed->processes},
                                                         {"controllers", h.setup_needed->controllers}}
                                        : nlohmann::json(nullptr)},
    };
}

nlohmann::json proof_json(const proof& p)
{
    nlohmann::json j = {
        {"method", std::string(to_string(p.tried))},
        {"attempted", p.attempted},
        {"ok", p.ok},
        {"detail", p.detail},
        {"escapee_pid", p.escapee ? nlohmann::json(*p.escapee) : nlohmann::json(nullptr)},
        {"report", nullptr},
    };
    if (p.report)
        j["report"] = nlohmann::json::parse(to_json(*p.report), nullptr, false);
    return j;
}

} // namespace

int run_setup(const command_line& cmd, json_file& json)
{
    setup_options o;
    o.cgroup = cmd.opts.cgroup.parent;
    auto r = setup_cgroup(o);
    if (!r) {
        warn("setup of the cgroup failed: " + r.error().message());
        return exit_internal;
    }
    std::string enabled, all;
    for (const auto& c : r->enabled)
        enabled += (enabled.empty() ? "" : " ") + c;
    for (const auto& c : r->controllers)
        all += (all.empty() ? "" : " ") + c;
    std::FILE* out = cmd.json_path == "-" ? stderr : stdout;
    std::fprintf(out, "cgrun: %s: moved %zu process(es) to %s; enabled %s; controllers for children: %s\n",
                 r->cgroup.c_str(), r->moved.size(), r->leaf.c_str(), enabled.empty() ? "none" : enabled.c_str(),
                 all.empty() ? "none" : all.c_str());
    for (const auto& w : r->warnings)
        warn("warning: " + w);
    std::fflush(out);
    nlohmann::json doc = {{"version", 1},         {"cgroup", r->cgroup},   {"leaf", r->leaf},
                          {"moved", r->moved},    {"enabled", r->enabled}, {"controllers", r->controllers},
                          {"changed", !r->moved.empty() || !r->enabled.empty()}, {"warnings", r->warnings}};
    if (auto w = json.write(doc.dump(2)); !w) {
        warn(w.error().message());
        return exit_internal;
    }
    return 0;
}

int run_check(const command_line& cmd, json_file& json)
{
    // With --json - the JSON owns stdout.
    std::FILE* out = cmd.json_path == "-" ? stderr : stdout;

    host_info host = probe_host(cmd.opts);
    row(out, "cgroup2 mount", text_or(host.cgroup2_mount, "none"));
    row(out, "own cgroup", text_or(host.own_cgroup, "unknown"));
    row(out, "cgroup.kill", host.cgroup_kill ? "yes" : "no");
    row(out, "delegated parent",
        host.delegated_parent ? *host.delegated_parent : yes_no(false, host.delegated_parent_error));
    row(out, "systemd delegation",
        host.delegated ? "yes (" + *host.delegation_marker + "; auto tries cgroup before scope)" : std::string("no"));
    row(out, "clone3 into cgroup", yes_no(host.clone_into_cgroup, host.clone_into_cgroup_error));
    row(out, "systemd manager", yes_no(host.systemd_reachable, host.systemd_error));
    std::string controllers;
    for (const auto& c : host.controllers)
        controllers += (controllers.empty() ? "" : " ") + c;
    row(out, "controllers", controllers.empty() ? "none" : controllers);
    if (auto& s = host.setup_needed)
        row(out, "limits", "need the setup step: " + std::to_string(s->processes) + " process(es) would move from " +
                               s->from + " to " + s->to + " (cgrun --setup-cgroup)");

    std::vector<proof> proofs;
    for (method m : {method::scope, method::cgroup}) {
        if (cmd.opts.method != method::automatic && cmd.opts.method != m)
            continue;
        bool may_work = m == method::scope ? host.systemd_reachable : host.delegated_parent.has_value();
        if (!may_work) {
            proof skipped;
            skipped.tried = m;
            skipped.detail = m == method::scope ? "no systemd manager reachable" : "no delegated parent cgroup";
            proofs.push_back(std::move(skipped));
        } else {
            proofs.push_back(prove(m, cmd.opts));
        }
    }

    bool any_ok = false;
    for (const auto& p : proofs) {
        std::string verdict = !p.attempted ? "skipped" : p.ok ? "ok" : "FAILED";
        row(out, "contains " + std::string(to_string(p.tried)), verdict + " (" + p.detail + ")");
        any_ok = any_ok || p.ok;
    }
    std::fflush(out);

    nlohmann::json proofs_json = nlohmann::json::array();
    for (const auto& p : proofs)
        proofs_json.push_back(proof_json(p));
    nlohmann::json doc = {
        {"version", 1},
        {"kind", "check"},
        {"host", host_json(host)},
        {"proofs", std::move(proofs_json)},
        {"ok", any_ok},
    };
    if (auto w = json.write(doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)); !w) {
        warn(w.error().message());
        return exit_internal;
    }
    return any_ok ? 0 : 1;
}

} // namespace cgrun::tool
