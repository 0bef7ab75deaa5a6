#include <cgrun/report.hpp>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>

namespace cgrun {

std::string_view to_string(method m) noexcept
{
    switch (m) {
    case method::automatic: return "auto";
    case method::scope: return "scope";
    case method::cgroup: return "cgroup";
    case method::pgroup: return "pgroup";
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

std::string to_json(const run_report& r)
{
    using json = nlohmann::ordered_json; // keep the schema's field order
    json j;
    j["version"] = 1;
    j["command"] = r.command;
    j["method"] = std::string(to_string(r.used));
    json fb = json::array();
    for (auto& f : r.fallbacks)
        fb.push_back({{"method", std::string(to_string(f.tried))}, {"reason", f.reason}});
    j["fallbacks"] = fb;
    j["unit"] = r.unit ? json(*r.unit) : json(nullptr);
    j["cgroup"] = r.cgroup ? json(*r.cgroup) : json(nullptr);
    j["pid"] = r.pid > 0 ? json(r.pid) : json(nullptr);
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
    j["wall_time_ms"] = r.wall_time_ms;
    j["cpu_user_ms"] = r.cpu_user_ms;
    j["cpu_system_ms"] = r.cpu_system_ms;
    j["memory_peak_bytes"] = r.memory_peak_bytes ? json(*r.memory_peak_bytes) : json(nullptr);
    j["oom_killed"] = r.oom_killed;
    j["error"] = r.error ? json(*r.error) : json(nullptr);
    // Invalid UTF-8 in argv must not make the report unwritable.
    return j.dump(2, ' ', false, json::error_handler_t::replace);
}

run_report failed_report(std::vector<std::string> command, method m, std::string error)
{
    run_report r;
    r.command = std::move(command);
    r.used = m;
    r.error = std::move(error);
    return r;
}

} // namespace cgrun
