#pragma once

// Resource limits: systemd property names and values, mapped to scope properties and to
// cgroup v2 files.

#include "systemd_scope.hpp"

#include <cgrun/error.hpp>
#include <cgrun/options.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace cgrun::detail {

struct limit_setting {
    std::string name;         // as given: "CPUQuota" (errors name this, never a D-Bus property)
    std::string value;        // as given: "0.5%"
    std::string controller;   // "memory", "pids", "cpu", "io", "cpuset"
    std::string file;         // "memory.max"
    std::string file_value;   // "10485760", "max", "1000 200000", "default 100", "0-3"
    scope_property property;  // what the scope gets: {"CPUQuotaPerSecUSec", 5000}

    [[nodiscard]] std::string given() const { return name + "=" + value; }
};

// What percentages are taken of, as systemd takes them.
struct host_totals {
    std::uint64_t memory_bytes = 0; // physical RAM (sysconf _SC_PHYS_PAGES × page size)
    std::uint64_t page_size = 4096;
    std::uint64_t tasks = 0;        // min(kernel.pid_max - 1, kernel.threads-max)

    static host_totals current();
};

// Parses systemd.resource-control(5) values (see doc/cgrun.1, -p):
//   MemoryMax, MemoryHigh, MemoryLow, MemoryMin, MemorySwapMax:
//       bytes, fractions allowed, suffix B/K/M/G/T/P/E (base 1024); N% / N‰ / N‱ of physical
//       RAM; infinity
//   TasksMax:  N, N% of the system's task limit, infinity
//   CPUQuota:  N% of one CPU (up to two decimals: 0.5%), over 100% for several CPUs
//   CPUWeight, IOWeight: 1..10000
//   AllowedCPUs: a CPU list, "0-3,5" or "0 2 4"
// `host` is read (host_totals::current()) only when a percentage needs it, unless given.
result<std::vector<limit_setting>> parse_limits(const std::vector<limit>& limits,
                                                const host_totals* host = nullptr);

// What spawn() refuses before it starts anything (no command, a negative timeout, a bad
// signal, a limit that does not parse); the parsed limits otherwise.
result<std::vector<limit_setting>> check_options(const options& opts);

} // namespace cgrun::detail
