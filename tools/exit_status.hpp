#pragma once

#include <cgrun/report.hpp>

#include <optional>
#include <system_error>

namespace cgrun::tool {

// COMMAND succeeded but left processes running that were not allowed (--on-leak=fail).
inline constexpr int exit_leaked = 123;
// As GNU timeout(1).
inline constexpr int exit_timed_out = 124;
inline constexpr int exit_internal = 125;
inline constexpr int exit_not_executable = 126;
inline constexpr int exit_not_found = 127;

// The status of a spawn() failure: 126/127 for exec errors, 125 for anything else.
[[nodiscard]] int spawn_failure_status(const std::error_code& code) noexcept;

// The status of a finished run; `caught_signal` is a signal that stopped cgrun itself.
// With `preserve_status`, a timeout gives COMMAND's own status, as timeout --preserve-status.
[[nodiscard]] int exit_status(const run_report& r, std::optional<int> caught_signal,
                              bool preserve_status = false) noexcept;

} // namespace cgrun::tool
