#pragma once

// Pure parsers for /proc/self/mountinfo and /proc/<pid>/cgroup; no I/O.

#include <optional>
#include <string>
#include <string_view>

namespace cgrun::detail {

// Mount point of the cgroup2 hierarchy (fstype "cgroup2"): /sys/fs/cgroup on pure v2
// hosts, /sys/fs/cgroup/unified on hybrid ones. nullopt when there is none.
std::optional<std::string> cgroup2_mount(std::string_view mountinfo);

// The path of the "0::" line (the cgroup2 membership), e.g. "/system.slice/x.service".
// v1 lines are skipped. nullopt when there is no "0::" line, or the path lies outside the
// caller's cgroup namespace ("/.." prefix).
std::optional<std::string> unified_cgroup(std::string_view proc_cgroup);

// Unescapes mountinfo's octal escapes (\040 for space etc.).
std::string unescape_mountinfo(std::string_view s);

// A cgroup path inside the hierarchy ("/a/b") made relative ("a/b"), after checking it
// holds no "." or ".." component; nullopt if it does. "/" becomes "".
std::optional<std::string> relative_cgroup_path(std::string_view path);

// A name fit for one cgroup directory: no '/', not "." or "..", no "cgroup." prefix, no NUL.
bool valid_cgroup_name(std::string_view name);

} // namespace cgrun::detail
