// Scope unit names: generated from the command, or validated when the caller gives one.

#include "unit_name.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace cgrun::detail {

namespace {
// systemd's UNIT_NAME_MAX is 256 including the terminating NUL.
constexpr size_t unit_name_max = 255;

bool plain_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' || c == '_' ||
           c == '.';
}
} // namespace

std::string escape_unit_component(std::string_view s)
{
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (plain_char(c) && !(i == 0 && c == '.')) {
            out.push_back(c);
        } else {
            char buf[5];
            std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
            out.append(buf);
        }
    }
    return out;
}

std::string generate_scope_name(std::string_view argv0)
{
    static std::atomic<unsigned long> counter{0};
    auto slash = argv0.rfind('/');
    if (slash != std::string_view::npos)
        argv0 = argv0.substr(slash + 1);
    auto name = escape_unit_component(argv0.substr(0, 32));
    if (name.size() > 64)
        name.resize(64);
    // Do not cut an escape sequence in half.
    if (auto bs = name.rfind('\\'); bs != std::string::npos && name.size() - bs < 4)
        name.resize(bs);
    return "cgrun-" + (name.empty() ? std::string("cmd") : name) + "-" + std::to_string(::getpid()) + "-" +
           std::to_string(++counter) + ".scope";
}

result<std::string> validate_scope_name(std::string_view name)
{
    std::string n(name);
    constexpr std::string_view suffix = ".scope";
    bool has_suffix = n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
    std::string_view prefix = has_suffix ? std::string_view(n).substr(0, n.size() - suffix.size()) : std::string_view(n);
    if (prefix.empty() || prefix[0] == '.')
        return error::make(errc::invalid_argument, "invalid unit name '" + n + "': empty or starting with '.'");
    for (char c : prefix)
        if (!plain_char(c) && c != '-' && c != '\\')
            return error::make(errc::invalid_argument,
                               "invalid unit name '" + n + "': character '" + std::string(1, c) + "' not allowed");
    if (!has_suffix) {
        // A name with another unit type's suffix is a mistake, not a scope prefix.
        for (std::string_view other : {".service", ".slice", ".socket", ".target", ".timer", ".mount", ".path",
                                       ".device", ".swap", ".automount"})
            if (n.size() > other.size() && n.compare(n.size() - other.size(), other.size(), other) == 0)
                return error::make(errc::invalid_argument, "invalid unit name '" + n + "': not a .scope");
        n += suffix;
    }
    if (n.size() > unit_name_max)
        return error::make(errc::invalid_argument, "invalid unit name: longer than 255 characters");
    return n;
}

} // namespace cgrun::detail
