#pragma once

// Resource limits: systemd property names and values, mapped to scope properties and to
// cgroup v2 files.

#include <cgrun/error.hpp>
#include <cgrun/options.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace cgrun::detail {

struct limit_setting {
    std::string controller;   // "memory", "pids", "cpu"
    std::string file;         // "memory.max"
    std::string file_value;   // "10485760", "max", "20000 100000"
    std::string property;     // D-Bus property: "MemoryMax", "TasksMax", "CPUQuotaPerSecUSec"
    std::uint64_t property_value = 0;
};

// Accepts MemoryMax=<bytes>[K|M|G|T]|infinity, TasksMax=<n>|infinity, CPUQuota=<n>%.
result<std::vector<limit_setting>> parse_limits(const std::vector<limit>& limits);

} // namespace cgrun::detail
