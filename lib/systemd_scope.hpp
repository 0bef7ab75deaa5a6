#pragma once

// Transient systemd scopes over sd-bus. Compiled to "unavailable" stubs without libsystemd.

#include <cgrun/error.hpp>
#include <cgrun/options.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace cgrun::detail {

// A unit property with a D-Bus type other than the fixed ones below: "t" (a u64) or "ay"
// (bytes, e.g. AllowedCPUs' CPU bitmask).
struct scope_property {
    std::string name;
    std::variant<std::uint64_t, std::vector<std::uint8_t>> value;
};

struct scope_request {
    std::string unit;
    std::string description;
    std::string slice;
    std::vector<pid_t> pids;
    std::optional<std::uint64_t> runtime_max_usec;
    std::uint64_t timeout_stop_usec = 0;
    int kill_signal = 0;
    bool delegate = false; // Delegate=yes: the scope's subtree is ours to manage
    std::vector<scope_property> properties;
};

// One connection to a systemd manager per thread, shared by the children that thread
// spawned; calls are serialized by an internal mutex (sd-bus objects are not thread-safe).
class scope_manager;

// This thread's cached connection for `kind` (system as root, user otherwise, for automatic);
// reconnects when the cached one broke. Errors are errc::systemd_unavailable.
result<std::shared_ptr<scope_manager>> connect_manager(bus_kind kind, std::chrono::milliseconds timeout);

// StartTransientUnit for req.pid and waits for the start job's JobRemoved "done" (the match
// is installed before the call). Errors: errc::scope_failed with the D-Bus error name and
// message.
result<void> start_scope(scope_manager& m, const scope_request& req, std::chrono::milliseconds timeout);

// StopUnit(unit, "replace"); best effort, for cleaning up a scope whose child failed to start.
void stop_scope(scope_manager& m, const std::string& unit, std::chrono::milliseconds timeout);

// Tells systemd that an emptied scope is done (StopUnit, not waiting for the reply).
// systemd learns of an empty cgroup from cgroup.events notifications, which the kernel
// rate-limits to about one per 10 ms; asking it directly collects the scope sooner.
void finish_scope(scope_manager& m, const std::string& unit);

// Whether the unit is still loaded (for tests and the final check).
result<bool> unit_loaded(scope_manager& m, const std::string& unit, std::chrono::milliseconds timeout);

} // namespace cgrun::detail
