// Pure parsers of /proc/self/mountinfo and /proc/PID/cgroup, and cgroup path checks.

#include "cgroup_path.hpp"

#include <vector>

namespace cgrun::detail {

namespace {
std::vector<std::string_view> split(std::string_view s, char sep)
{
    std::vector<std::string_view> out;
    size_t start = 0;
    for (;;) {
        size_t pos = s.find(sep, start);
        if (pos == std::string_view::npos) {
            out.push_back(s.substr(start));
            return out;
        }
        out.push_back(s.substr(start, pos - start));
        start = pos + 1;
    }
}
} // namespace

std::string unescape_mountinfo(std::string_view s)
{
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' &&
            s[i + 3] <= '7') {
            out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
            i += 3;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

std::optional<std::string> cgroup2_mount(std::string_view mountinfo)
{
    // Fields: id parent major:minor root mountpoint options [optional...] - fstype source superopts
    for (auto line : split(mountinfo, '\n')) {
        if (line.empty())
            continue;
        auto fields = split(line, ' ');
        size_t dash = 0;
        for (size_t i = 6; i < fields.size(); ++i)
            if (fields[i] == "-") {
                dash = i;
                break;
            }
        if (dash == 0 || dash + 1 >= fields.size() || fields.size() < 5)
            continue;
        if (fields[dash + 1] == "cgroup2")
            return unescape_mountinfo(fields[4]);
    }
    return std::nullopt;
}

std::optional<std::string> unified_cgroup(std::string_view proc_cgroup)
{
    for (auto line : split(proc_cgroup, '\n')) {
        if (line.substr(0, 3) != "0::")
            continue;
        auto path = line.substr(3);
        // A cgroup outside our cgroup namespace shows up as "/../..."; nothing we can
        // reach through our mount, so treat it as absent.
        if (path.empty() || path[0] != '/' || path.substr(0, 3) == "/..")
            return std::nullopt;
        // The kernel appends " (deleted)" for a removed cgroup.
        constexpr std::string_view deleted = " (deleted)";
        if (path.size() > deleted.size() && path.substr(path.size() - deleted.size()) == deleted)
            return std::nullopt;
        return std::string(path);
    }
    return std::nullopt;
}

std::optional<std::string> relative_cgroup_path(std::string_view path)
{
    std::string out;
    for (auto part : split(path, '/')) {
        if (part.empty())
            continue;
        if (part == "." || part == ".." || part.find('\0') != std::string_view::npos)
            return std::nullopt;
        if (!out.empty())
            out.push_back('/');
        out.append(part);
    }
    return out;
}

bool valid_cgroup_name(std::string_view name)
{
    return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
           name.find('\0') == std::string_view::npos && name.substr(0, 7) != "cgroup." && name.size() < 256;
}

} // namespace cgrun::detail
