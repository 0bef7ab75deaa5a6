#pragma once

#include <cgrun/error.hpp>

#include <string>
#include <string_view>

namespace cgrun::detail {

// "cgrun-<escaped command name>-<pid>-<n>.scope": unique per host while this process lives.
std::string generate_scope_name(std::string_view argv0);

// A caller-given scope name: characters [A-Za-z0-9:_.\-\\], ".scope" appended when it has
// no suffix, under 256 characters. Anything else is errc::invalid_argument.
result<std::string> validate_scope_name(std::string_view name);

// systemd-escape style: bytes outside [A-Za-z0-9:_.] become \xNN (a leading '.' too).
std::string escape_unit_component(std::string_view s);

} // namespace cgrun::detail
