// Resource limits (-p NAME=VALUE): parsed into scope properties and cgroup v2 files.

#include "limits.hpp"

#include <cerrno>
#include <cstdlib>
#include <limits>

namespace cgrun::detail {

namespace {

std::optional<std::uint64_t> parse_u64(const std::string& s, std::string& rest)
{
    if (s.empty() || s[0] < '0' || s[0] > '9')
        return std::nullopt;
    errno = 0;
    char* end = nullptr;
    unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    if (errno)
        return std::nullopt;
    rest = end;
    return v;
}

error bad(const limit& l, const std::string& why)
{
    return error::make(errc::invalid_argument, "invalid " + l.name + "=" + l.value + ": " + why);
}

} // namespace

result<std::vector<limit_setting>> parse_limits(const std::vector<limit>& limits)
{
    constexpr auto infinity = std::numeric_limits<std::uint64_t>::max();
    std::vector<limit_setting> out;
    for (auto& l : limits) {
        limit_setting s;
        std::string rest;
        if (l.name == "MemoryMax") {
            s.controller = "memory";
            s.file = "memory.max";
            s.property = "MemoryMax";
            if (l.value == "infinity") {
                s.file_value = "max";
                s.property_value = infinity;
            } else {
                auto v = parse_u64(l.value, rest);
                if (!v)
                    return bad(l, "expected bytes with an optional K, M, G or T suffix, or infinity");
                std::uint64_t mult = 1;
                if (rest == "K")
                    mult = 1ULL << 10;
                else if (rest == "M")
                    mult = 1ULL << 20;
                else if (rest == "G")
                    mult = 1ULL << 30;
                else if (rest == "T")
                    mult = 1ULL << 40;
                else if (!rest.empty())
                    return bad(l, "unknown suffix '" + rest + "'");
                if (*v > infinity / mult)
                    return bad(l, "too large");
                s.property_value = *v * mult;
                s.file_value = std::to_string(s.property_value);
            }
        } else if (l.name == "TasksMax") {
            s.controller = "pids";
            s.file = "pids.max";
            s.property = "TasksMax";
            if (l.value == "infinity") {
                s.file_value = "max";
                s.property_value = infinity;
            } else {
                auto v = parse_u64(l.value, rest);
                if (!v || !rest.empty() || *v == 0)
                    return bad(l, "expected a positive number of tasks or infinity");
                s.property_value = *v;
                s.file_value = std::to_string(*v);
            }
        } else if (l.name == "CPUQuota") {
            s.controller = "cpu";
            s.file = "cpu.max";
            s.property = "CPUQuotaPerSecUSec";
            auto v = parse_u64(l.value, rest);
            if (!v || rest != "%" || *v == 0 || *v > 100000)
                return bad(l, "expected a percentage such as 20%");
            // CPUQuota=N% is N% of one CPU: N/100 s of CPU time per second.
            s.property_value = *v * 10000;
            s.file_value = std::to_string(*v * 1000) + " 100000";
        } else {
            return error::make(errc::invalid_argument,
                               "unknown property '" + l.name + "' (supported: MemoryMax, TasksMax, CPUQuota)");
        }
        out.push_back(std::move(s));
    }
    return out;
}

} // namespace cgrun::detail
