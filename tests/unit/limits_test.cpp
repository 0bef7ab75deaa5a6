#include "limits.hpp"

#include <doctest/doctest.h>

#include <variant>

using namespace cgrun;
using namespace cgrun::detail;

namespace {

// 8 GiB of 4 KiB pages and pid_max 4194304, so percentages are exact and host-independent.
const host_totals host{8ULL << 30, 4096, 4194303};

limit_setting one(const std::string& name, const std::string& value)
{
    auto r = parse_limits({{name, value}}, &host);
    REQUIRE_MESSAGE(r.has_value(), std::string(name + "=" + value + ": " + (r ? "" : r.error().message())));
    return r->at(0);
}

std::uint64_t u64(const limit_setting& s)
{
    REQUIRE(std::holds_alternative<std::uint64_t>(s.property.value));
    return std::get<std::uint64_t>(s.property.value);
}

std::string error_of(const std::string& name, const std::string& value)
{
    auto r = parse_limits({{name, value}}, &host);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::invalid_argument);
    return r.error().message();
}

} // namespace

TEST_CASE("MemoryMax takes bytes with binary suffixes or infinity")
{
    auto s = one("MemoryMax", "10M");
    CHECK(s.file == "memory.max");
    CHECK(s.controller == "memory");
    CHECK(s.file_value == "10485760");
    CHECK(s.property.name == "MemoryMax");
    CHECK(u64(s) == 10485760u);
    CHECK(one("MemoryMax", "infinity").file_value == "max");
    CHECK(u64(one("MemoryMax", "infinity")) == UINT64_MAX);
    CHECK(one("MemoryMax", "4096").file_value == "4096");
    CHECK(one("MemoryMax", "4096B").file_value == "4096");
    CHECK(one("MemoryMax", "2K").file_value == "2048");
    CHECK(one("MemoryMax", "1T").file_value == "1099511627776");
    CHECK_FALSE(parse_limits({{"MemoryMax", "10X"}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"MemoryMax", "-1"}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"MemoryMax", ""}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"MemoryMax", "G"}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"MemoryMax", "20E"}}, &host).has_value()); // overflows
}

TEST_CASE("sizes take fractions of their unit, as systemd's parse_size")
{
    CHECK(one("MemoryMax", "1.5G").file_value == std::to_string(3ULL << 29));
    CHECK(one("MemoryMax", "0.5K").file_value == "512");
    CHECK(one("MemoryMax", "1.25M").file_value == std::to_string(1310720));
    CHECK(one("MemoryMax", "0.1K").file_value == "102"); // rounded down to a byte
}

TEST_CASE("sizes of several terms, units descending, as systemd's parse_size")
{
    CHECK(one("MemoryMax", "1G 512M").file_value == std::to_string(3ULL << 29));
    CHECK(one("MemoryMax", "1G512M").file_value == std::to_string(3ULL << 29));
    CHECK(one("MemoryMax", "1 G").file_value == std::to_string(1ULL << 30));
    CHECK(one("MemoryMax", "1.G").file_value == std::to_string(1ULL << 30)); // systemd: "10.M is valid"
    CHECK(one("MemoryMax", "2M 100").file_value == std::to_string((2ULL << 20) + 100));
    CHECK(one("MemoryMax", "1M 1K 1B").file_value == std::to_string((1ULL << 20) + 1024 + 1));
    CHECK_FALSE(parse_limits({{"MemoryMax", "512M 1G"}}, &host).has_value()); // units must descend
    CHECK_FALSE(parse_limits({{"MemoryMax", "1M 1M"}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"MemoryMax", "100 1K"}}, &host).has_value()); // bytes only last
    CHECK_FALSE(parse_limits({{"MemoryMax", "1G "}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"MemoryMax", "15E 1E"}}, &host).has_value()); // overflows
}

TEST_CASE("memory percentages are of physical memory, in whole pages")
{
    CHECK(one("MemoryMax", "50%").file_value == std::to_string(4ULL << 30));
    CHECK(u64(one("MemoryMax", "50%")) == (4ULL << 30));
    CHECK(one("MemoryHigh", "12.5%").file_value == std::to_string(1ULL << 30));
    CHECK(one("MemoryMax", "100%").file_value == std::to_string(8ULL << 30));
    CHECK(one("MemoryMax", "5\u2030").file_value == std::to_string((8ULL << 30) / 200 / 4096 * 4096));
    CHECK(one("MemoryMin", "1\u2031").file_value == std::to_string((8ULL << 30) / 10000 / 4096 * 4096));
    CHECK(error_of("MemoryMax", "101%").find("MemoryMax=101%") != std::string::npos);
    CHECK_FALSE(parse_limits({{"MemoryMax", "0.125%"}}, &host).has_value()); // two decimals at most
}

TEST_CASE("each memory property has its file; only Max and High refuse 0")
{
    CHECK(one("MemoryHigh", "1G").file == "memory.high");
    CHECK(one("MemoryLow", "1G").file == "memory.low");
    CHECK(one("MemoryMin", "1G").file == "memory.min");
    CHECK(one("MemorySwapMax", "1G").file == "memory.swap.max");
    CHECK(one("MemorySwapMax", "0").file_value == "0");
    CHECK(one("MemoryLow", "0").file_value == "0");
    CHECK(one("MemorySwapMax", "infinity").file_value == "max");
    CHECK(one("MemorySwapMax", "infinity").property.name == "MemorySwapMax");
    CHECK(error_of("MemoryMax", "0").find("too small") != std::string::npos);
    CHECK(error_of("MemoryHigh", "0").find("too small") != std::string::npos);
    for (auto* name : {"MemoryHigh", "MemoryLow", "MemoryMin", "MemorySwapMax"})
        CHECK(one(name, "1G").controller == "memory");
}

TEST_CASE("TasksMax takes a number, a percentage of the system's task limit, or infinity")
{
    auto s = one("TasksMax", "5");
    CHECK(s.file == "pids.max");
    CHECK(s.controller == "pids");
    CHECK(s.file_value == "5");
    CHECK(u64(s) == 5u);
    // systemd: min(pid_max - 1, threads-max) × percentage, rounded down.
    CHECK(one("TasksMax", "10%").file_value == std::to_string(4194303ULL * 1000 / 10000));
    CHECK(u64(one("TasksMax", "10%")) == 419430u);
    CHECK(one("TasksMax", "infinity").file_value == "max");
    CHECK(error_of("TasksMax", "0").find("too small") != std::string::npos);
    CHECK_FALSE(parse_limits({{"TasksMax", "5K"}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"TasksMax", "150%"}}, &host).has_value());
}

TEST_CASE("host_totals::current reads this host")
{
    auto h = host_totals::current();
    CHECK(h.memory_bytes > 0);
    CHECK(h.tasks > 0);
    CHECK(parse_limits({{"TasksMax", "50%"}}).has_value());
}

TEST_CASE("CPUQuota: percent of one CPU with up to two decimals, as systemd writes cpu.max")
{
    auto s = one("CPUQuota", "20%");
    CHECK(s.file == "cpu.max");
    CHECK(s.controller == "cpu");
    CHECK(s.file_value == "20000 100000");
    CHECK(s.property.name == "CPUQuotaPerSecUSec");
    CHECK(u64(s) == 200000u);
    CHECK(u64(one("CPUQuota", "0.5%")) == 5000u);
    // The period grows so the quota stays at least 1 ms (systemd's cgroup_cpu_adjust_period).
    CHECK(one("CPUQuota", "0.5%").file_value == "1000 200000");
    CHECK(one("CPUQuota", "0.05%").file_value == "1000 1000000"); // 1 s at most
    CHECK(one("CPUQuota", "200%").file_value == "200000 100000");
    CHECK(one("CPUQuota", "12.34%").file_value == "12340 100000");
    CHECK_FALSE(parse_limits({{"CPUQuota", "20"}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"CPUQuota", "0%"}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"CPUQuota", "0.001%"}}, &host).has_value());
}

TEST_CASE("errors name what the user typed, never a D-Bus property")
{
    auto m = error_of("CPUQuota", "abc");
    CHECK(m.find("CPUQuota=abc") != std::string::npos);
    CHECK(m.find("PerSecUSec") == std::string::npos);
    CHECK(one("CPUQuota", "50%").given() == "CPUQuota=50%");
}

TEST_CASE("CPUWeight and IOWeight: 1 to 10000")
{
    auto c = one("CPUWeight", "50");
    CHECK(c.file == "cpu.weight");
    CHECK(c.controller == "cpu");
    CHECK(c.file_value == "50");
    CHECK(c.property.name == "CPUWeight");
    CHECK(u64(c) == 50u);
    auto io = one("IOWeight", "10000");
    CHECK(io.file == "io.weight");
    CHECK(io.controller == "io");
    CHECK(io.file_value == "default 10000");
    CHECK(u64(io) == 10000u);
    CHECK_FALSE(parse_limits({{"CPUWeight", "0"}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"IOWeight", "10001"}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"IOWeight", "idle"}}, &host).has_value());
}

TEST_CASE("CPUWeight=idle: cpu.idle for the cgroup method, weight 0 for systemd")
{
    auto c = one("CPUWeight", "idle");
    CHECK(c.controller == "cpu");
    CHECK(c.file == "cpu.idle");
    CHECK(c.file_value == "1");
    CHECK(c.property.name == "CPUWeight");
    CHECK(u64(c) == 0u);
    CHECK(error_of("CPUWeight", "idel").find("or idle") != std::string::npos);
}

TEST_CASE("AllowedCPUs: a CPU list, as a bitmask for systemd and a list for cpuset.cpus")
{
    auto s = one("AllowedCPUs", "0-3,5");
    CHECK(s.file == "cpuset.cpus");
    CHECK(s.controller == "cpuset");
    CHECK(s.file_value == "0-3,5");
    REQUIRE(std::holds_alternative<std::vector<std::uint8_t>>(s.property.value));
    CHECK(std::get<std::vector<std::uint8_t>>(s.property.value) == std::vector<std::uint8_t>{0x2f});
    CHECK(one("AllowedCPUs", "0 2 4").file_value == "0,2,4");
    CHECK(one("AllowedCPUs", "9").file_value == "9");
    CHECK(std::get<std::vector<std::uint8_t>>(one("AllowedCPUs", "9").property.value) ==
          std::vector<std::uint8_t>{0, 2});
    CHECK(one("AllowedCPUs", "1,0,2-2").file_value == "0-2");
    CHECK_FALSE(parse_limits({{"AllowedCPUs", "3-1"}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"AllowedCPUs", "a"}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"AllowedCPUs", ","}}, &host).has_value());
    CHECK_FALSE(parse_limits({{"AllowedCPUs", "99999"}}, &host).has_value());
}

TEST_CASE("unknown properties are rejected with their name and the supported ones")
{
    auto r = parse_limits({{"IOReadBandwidthMax", "10"}}, &host);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::invalid_argument);
    CHECK(r.error().message().find("IOReadBandwidthMax") != std::string::npos);
    CHECK(r.error().message().find("AllowedCPUs") != std::string::npos);
    for (auto name : limit_names)
        CHECK_MESSAGE(r.error().message().find(std::string(name)) != std::string::npos, name);
}
