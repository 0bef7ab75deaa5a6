#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace cgrun::tool {

// "1.5", "250ms", "2m", "1h", "1d": a non-negative decimal number with an optional unit
// (ms, s, m, h, d; none = seconds). A nonzero value below 1 ms rounds up to 1 ms, and
// values beyond 100 years are clamped to it. nullopt when malformed.
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// "250ms", "1.5s", "2m": compact text for messages.
[[nodiscard]] std::string format_duration(std::chrono::milliseconds d);

} // namespace cgrun::tool
