#include "duration.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>

namespace cgrun::tool {

namespace {

constexpr double max_ms = 100.0 * 365 * 24 * 3600 * 1000;

std::optional<double> unit_factor_ms(std::string_view unit)
{
    if (unit.empty() || unit == "s")
        return 1000.0;
    if (unit == "ms")
        return 1.0;
    if (unit == "m")
        return 60.0 * 1000;
    if (unit == "h")
        return 3600.0 * 1000;
    if (unit == "d")
        return 24 * 3600.0 * 1000;
    return std::nullopt;
}

} // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text)
{
    // Only digits and one '.': from_chars alone would also take "inf", "nan" and exponents.
    std::size_t end = 0;
    bool seen_digit = false;
    bool seen_dot = false;
    for (; end < text.size(); ++end) {
        char c = text[end];
        if (c >= '0' && c <= '9')
            seen_digit = true;
        else if (c == '.' && !seen_dot)
            seen_dot = true;
        else
            break;
    }
    if (!seen_digit)
        return std::nullopt;
    auto factor = unit_factor_ms(text.substr(end));
    if (!factor)
        return std::nullopt;

    // The text is digits and at most one '.' by now, so strtod reads exactly that (the tool never
    // calls setlocale: the decimal point is '.'). std::from_chars for double would pull libm into
    // the tool for its rounding-mode calls, and the tool's peak RSS counts every mapped library.
    // "0" first, for ".5". Built by append: "0" + std::string(...) trips a false -Wrestrict of
    // GCC 12 at -O3 (GCC bug 105651).
    std::string number(1, '0');
    number.append(text.substr(0, end));
    errno = 0;
    char* stop = nullptr;
    double value = std::strtod(number.c_str(), &stop);
    if (stop != number.c_str() + number.size())
        return std::nullopt;
    if (errno == ERANGE && value != 0)
        value = max_ms;

    double ms = std::ceil(value * *factor);
    if (!(ms <= max_ms))
        ms = max_ms;
    return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(ms));
}

std::string format_duration(std::chrono::milliseconds d)
{
    auto ms = d.count();
    if (ms % 1000 != 0 || ms == 0)
        return std::to_string(ms) + "ms";
    auto s = ms / 1000;
    if (s % 3600 == 0)
        return std::to_string(s / 3600) + "h";
    if (s % 60 == 0)
        return std::to_string(s / 60) + "m";
    return std::to_string(s) + "s";
}

} // namespace cgrun::tool
