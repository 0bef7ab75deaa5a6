// The run report: built from a finished child's state, and written as JSON.

#include "child_state.hpp"

#include <cgrun/report.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace cgrun {

std::string_view to_string(method m) noexcept
{
    switch (m) {
    case method::automatic: return "auto";
    case method::scope: return "scope";
    case method::cgroup: return "cgroup";
    case method::pgroup: return "pgroup";
    case method::subreaper: return "subreaper";
    }
    return "unknown";
}

std::optional<method> method_from_string(std::string_view s) noexcept
{
    if (s == "auto")
        return method::automatic;
    if (s == "scope")
        return method::scope;
    if (s == "cgroup")
        return method::cgroup;
    if (s == "pgroup")
        return method::pgroup;
    if (s == "subreaper")
        return method::subreaper;
    return std::nullopt;
}

std::string signal_name(int sig)
{
    const char* abbrev = sigabbrev_np(sig);
    return abbrev ? abbrev : std::to_string(sig);
}

std::optional<int> signal_from_string(std::string_view s)
{
    if (s.empty())
        return std::nullopt;
    if (s[0] >= '0' && s[0] <= '9') {
        int v = 0;
        for (char c : s) {
            if (c < '0' || c > '9' || v > 1000)
                return std::nullopt;
            v = v * 10 + (c - '0');
        }
        if (v <= 0 || v >= NSIG)
            return std::nullopt;
        return v;
    }
    std::string up;
    for (char c : s)
        up.push_back(static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c));
    if (up.rfind("SIG", 0) == 0)
        up = up.substr(3);
    for (int sig = 1; sig < NSIG; ++sig) {
        const char* a = sigabbrev_np(sig);
        if (a && up == a)
            return sig;
    }
    if (up.rfind("RTMIN+", 0) == 0 || up == "RTMIN") {
        int off = up.size() > 6 ? std::atoi(up.c_str() + 6) : 0;
        if (SIGRTMIN + off <= SIGRTMAX)
            return SIGRTMIN + off;
    }
    return std::nullopt;
}

std::optional<termination> termination_of(const run_report& r) noexcept
{
    if (r.pid <= 0)
        return termination::start_failed;
    if (r.cpu_time_exceeded)
        return termination::cpu_time;
    if (r.timed_out)
        return termination::timeout;
    if (r.cancelled)
        return termination::cancelled;
    if (r.signal)
        return r.oom_killed ? termination::oom_killed : termination::signaled;
    if (r.exit_code)
        return termination::exited;
    return std::nullopt;
}

std::string_view to_string(termination t) noexcept
{
    switch (t) {
    case termination::exited: return "exited";
    case termination::signaled: return "signaled";
    case termination::timeout: return "timeout";
    case termination::cpu_time: return "cpu-time";
    case termination::cancelled: return "cancelled";
    case termination::oom_killed: return "oom-killed";
    case termination::start_failed: return "start-failed";
    }
    return "unknown";
}

std::string rfc3339_utc(std::chrono::system_clock::time_point t)
{
    // The civil calendar by arithmetic: glibc's gmtime_r() loads /etc/localtime on first use
    // (tzset), a file read for a UTC time.
    using namespace std::chrono;
    auto ms = floor<milliseconds>(t);
    auto day = floor<days>(ms);
    year_month_day ymd{day};
    hh_mm_ss hms{ms - day};
    char out[40];
    std::snprintf(out, sizeof out, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                  static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                  static_cast<int>(hms.seconds().count()), static_cast<int>(hms.subseconds().count()));
    return out;
}

std::string to_json(const run_report& r)
{
    using json = nlohmann::ordered_json; // keep the schema's field order
    json j;
    j["version"] = 1;
    j["kind"] = "run";
    j["command"] = r.command;
    // A started run always has a concrete method: "auto" would tell a consumer nothing.
    j["method"] = r.used != method::automatic ? json(std::string(to_string(r.used))) : json(nullptr);
    json fb = json::array();
    for (auto& f : r.fallbacks)
        fb.push_back({{"method", std::string(to_string(f.tried))}, {"reason", f.reason}});
    j["fallbacks"] = fb;
    j["method_reason"] = r.method_reason ? json(*r.method_reason) : json(nullptr);
    j["unit"] = r.unit ? json(*r.unit) : json(nullptr);
    j["cgroup"] = r.cgroup ? json(*r.cgroup) : json(nullptr);
    j["pid"] = r.pid > 0 ? json(r.pid) : json(nullptr);
    j["start_time"] = r.start_time ? json(rfc3339_utc(*r.start_time)) : json(nullptr);
    auto how = termination_of(r);
    j["termination"] = how ? json(std::string(to_string(*how))) : json(nullptr);
    j["exit_code"] = r.exit_code ? json(*r.exit_code) : json(nullptr);
    j["signal"] = r.signal ? json(signal_name(*r.signal)) : json(nullptr);
    j["timed_out"] = r.timed_out;
    j["cancelled"] = r.cancelled;
    if (r.kill) {
        j["kill"] = {{"mechanism", r.kill->mechanism},
                     {"graceful_signal",
                      r.kill->graceful_signal ? json(signal_name(*r.kill->graceful_signal)) : json(nullptr)},
                     {"escalated", r.kill->escalated}};
    } else {
        j["kill"] = nullptr;
    }
    j["remaining_processes"] = r.remaining_processes;
    json left = json::array();
    for (auto& l : r.leftovers)
        left.push_back({{"pid", l.pid},
                        {"command", l.command},
                        {"escaped", l.escaped},
                        {"escaped_via", l.escaped_via ? json(*l.escaped_via) : json(nullptr)},
                        {"age_ms", l.age_ms}});
    j["leftovers"] = left;
    j["leftovers_total"] = r.leftovers_total;
    j["wall_time_ms"] = r.wall_time_ms;
    j["cpu_user_ms"] = r.cpu_user_ms;
    j["cpu_system_ms"] = r.cpu_system_ms;
    j["memory_peak_bytes"] = r.memory_peak_bytes ? json(*r.memory_peak_bytes) : json(nullptr);
    j["oom_killed"] = r.oom_killed;
    j["error"] = r.error ? json(*r.error) : json(nullptr);
    // Invalid UTF-8 in argv must not make the report unwritable.
    return j.dump(2, ' ', false, json::error_handler_t::replace);
}

namespace detail {

double millis(const timeval& t)
{
    return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_usec) / 1e3;
}

run_report make_report(const child_state& st)
{
    run_report rep;
    rep.command = st.opts.argv;
    rep.used = st.where.used;
    rep.fallbacks = st.where.fallbacks;
    rep.method_reason = st.where.reason;
    rep.unit = st.where.unit;
    rep.cgroup = st.where.cgroup;
    rep.pid = st.main.pid;
    rep.start_time = st.report_start;
    cpu_times cpu = st.used.cpu;
    if (auto& ex = st.main.exit) {
        if (ex->code == CLD_EXITED)
            rep.exit_code = ex->status;
        else
            rep.signal = ex->status;
        // The main process's own usage (and that of children it waited for): the only
        // figure for pgroup, and a floor where the cgroup vanished before it could be read.
        double u = millis(ex->usage.ru_utime);
        double s = millis(ex->usage.ru_stime);
        if (u + s > cpu.user_ms + cpu.system_ms)
            cpu = {u, s};
    }
    rep.timed_out = st.timed_out;
    rep.cpu_time_exceeded = st.cpu_time_exceeded;
    rep.cancelled = st.cancelled;
    rep.kill = st.kill;
    rep.remaining_processes = st.remaining;
    if (st.leftovers)
        rep.leftovers = *st.leftovers;
    rep.leftovers_total = st.leftovers_total;
    rep.wall_time_ms = st.wall_ms;
    rep.cpu_user_ms = cpu.user_ms;
    rep.cpu_system_ms = cpu.system_ms;
    rep.memory_peak_bytes = st.used.memory_peak;
    rep.oom_killed = st.used.oom;
    rep.error = st.late_error;
    return rep;
}

} // namespace detail

run_report failed_report(std::vector<std::string> command, std::string error)
{
    run_report r;
    r.command = std::move(command);
    r.error = std::move(error);
    return r;
}

} // namespace cgrun
