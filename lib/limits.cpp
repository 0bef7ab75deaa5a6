// Resource limits (-p NAME=VALUE): parsed with systemd's value syntax into scope properties
// and cgroup v2 files; and the other checks of options before a spawn.

#include "limits.hpp"

#include "sys.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string_view>

namespace cgrun::detail {

namespace {

constexpr auto infinity = std::numeric_limits<std::uint64_t>::max();

// a × b / c, rounded down, without overflow in the product (the result must fit).
std::uint64_t muldiv(std::uint64_t a, std::uint64_t b, std::uint64_t c)
{
    __extension__ using u128 = unsigned __int128;
    return static_cast<std::uint64_t>(static_cast<u128>(a) * b / c);
}

// Digits only, no sign, no overflow.
std::optional<std::uint64_t> parse_digits(std::string_view s)
{
    if (s.empty() || s.size() > 20)
        return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9')
            return std::nullopt;
        auto d = static_cast<std::uint64_t>(c - '0');
        if (v > (infinity - d) / 10)
            return std::nullopt;
        v = v * 10 + d;
    }
    return v;
}

// systemd's parse_size(.., 1024): one or more terms, each digits with an optional fraction
// and a unit, the units descending ("1.5G", "1G 512M", "1 G", "10.M", "100"); a term without
// a unit (bytes) can only be the last. The fraction is of the unit, rounded down to a byte.
std::optional<std::uint64_t> parse_size(std::string_view s)
{
    constexpr std::string_view units = "EPTGMKB"; // descending, then no unit (bytes)
    auto skip = [&s](auto pred) {
        std::size_t n = 0;
        while (n < s.size() && pred(s[n]))
            ++n;
        auto taken = s.substr(0, n);
        s.remove_prefix(n);
        return taken;
    };
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n'; };
    auto digit = [](char c) { return c >= '0' && c <= '9'; };
    std::uint64_t total = 0;
    std::size_t allowed = 0; // index in `units` of the largest unit the next term may have
    do {
        skip(space);
        auto whole = parse_digits(skip(digit));
        if (!whole)
            return std::nullopt;
        std::string_view frac_text;
        if (!s.empty() && s.front() == '.') {
            s.remove_prefix(1);
            frac_text = skip(digit);
        }
        skip(space);
        auto at = s.empty() ? std::string_view::npos : units.find(s.front());
        if (at == std::string_view::npos)
            at = units.size(); // no unit: bytes
        else
            s.remove_prefix(1);
        if (at < allowed || frac_text.size() > 9)
            return std::nullopt;
        allowed = at + 1;
        std::uint64_t unit = at == units.size() ? 1 : std::uint64_t{1} << (10 * (units.size() - 1 - at));
        if (*whole > infinity / unit)
            return std::nullopt;
        std::uint64_t v = *whole * unit;
        if (!frac_text.empty()) {
            std::uint64_t scale = 1;
            for (std::size_t i = 0; i < frac_text.size(); ++i)
                scale *= 10;
            auto add = muldiv(*parse_digits(frac_text), unit, scale); // < unit: fits
            if (v > infinity - add)
                return std::nullopt;
            v += add;
        }
        if (total > infinity - v)
            return std::nullopt;
        total += v;
    } while (!s.empty());
    return total;
}

// systemd's parse_permyriad(): "N%" with up to two decimals, "N‰" with up to one, "N‱";
// in ten-thousandths. `bounded`: at most 100%.
std::optional<std::uint64_t> parse_permyriad(std::string_view s, bool bounded)
{
    int decimals_allowed = 0;
    std::uint64_t per_unit = 1; // permyriad per unit of the given sign
    if (s.ends_with("%")) {
        s.remove_suffix(1);
        decimals_allowed = 2;
        per_unit = 100;
    } else if (s.ends_with("\u2030")) { // ‰
        s.remove_suffix(std::string_view("\u2030").size());
        decimals_allowed = 1;
        per_unit = 10;
    } else if (s.ends_with("\u2031")) { // ‱
        s.remove_suffix(std::string_view("\u2031").size());
    } else {
        return std::nullopt;
    }
    auto dot = s.find('.');
    auto whole = parse_digits(s.substr(0, dot));
    if (!whole || *whole > infinity / 10000)
        return std::nullopt;
    std::uint64_t v = *whole * per_unit;
    if (dot != std::string_view::npos) {
        auto frac = s.substr(dot + 1);
        if (frac.empty() || static_cast<int>(frac.size()) > decimals_allowed || !parse_digits(frac))
            return std::nullopt;
        std::uint64_t f = *parse_digits(frac);
        for (auto i = frac.size(); static_cast<int>(i) < decimals_allowed; ++i)
            f *= 10;
        v += f;
    }
    if (bounded && v > 10000)
        return std::nullopt;
    return v;
}

std::optional<std::uint64_t> read_u64(const char* path)
{
    auto text = sys::read_file(AT_FDCWD, path);
    if (!text)
        return std::nullopt;
    auto end = text->find_first_not_of("0123456789");
    return parse_digits(std::string_view(*text).substr(0, end));
}

error bad(const limit& l, const std::string& why)
{
    return error::make(errc::invalid_argument, "invalid " + l.name + "=" + l.value + ": " + why);
}

// A CPU list ("0-3,5", "0 2 4") as systemd's parse_cpu_set() takes it, into a bitmask.
constexpr unsigned max_cpus = 8192;
std::optional<std::vector<std::uint8_t>> parse_cpu_list(std::string_view s)
{
    std::vector<std::uint8_t> mask;
    std::size_t i = 0;
    bool any = false;
    while (i < s.size()) {
        if (s[i] == ',' || s[i] == ' ') {
            ++i;
            continue;
        }
        auto end = s.find_first_of(", ", i);
        auto item = s.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i);
        i = end == std::string_view::npos ? s.size() : end;
        auto dash = item.find('-');
        auto lo = parse_digits(item.substr(0, dash));
        auto hi = dash == std::string_view::npos ? lo : parse_digits(item.substr(dash + 1));
        if (!lo || !hi || *lo > *hi || *hi >= max_cpus)
            return std::nullopt;
        if (mask.size() < *hi / 8 + 1)
            mask.resize(*hi / 8 + 1);
        for (auto c = *lo; c <= *hi; ++c)
            mask[c / 8] = static_cast<std::uint8_t>(mask[c / 8] | (1u << (c % 8)));
        any = true;
    }
    if (!any)
        return std::nullopt;
    return mask;
}

// The bitmask as cpuset.cpus takes it: "0-3,5".
std::string cpu_list(const std::vector<std::uint8_t>& mask)
{
    auto has = [&](unsigned c) { return c / 8 < mask.size() && (mask[c / 8] >> (c % 8) & 1u); };
    std::string out;
    unsigned n = static_cast<unsigned>(mask.size()) * 8;
    for (unsigned c = 0; c < n; ++c) {
        if (!has(c))
            continue;
        unsigned last = c;
        while (last + 1 < n && has(last + 1))
            ++last;
        if (!out.empty())
            out += ',';
        out += std::to_string(c);
        if (last > c)
            out += "-" + std::to_string(last);
        c = last;
    }
    return out;
}

struct memory_kind {
    std::string_view name;
    std::string_view file;
    std::uint64_t minimum; // systemd refuses MemoryMax=0 and MemoryHigh=0, not the others
};
constexpr memory_kind memory_kinds[] = {
    {"MemoryMax", "memory.max", 1},   {"MemoryHigh", "memory.high", 1}, {"MemoryLow", "memory.low", 0},
    {"MemoryMin", "memory.min", 0},   {"MemorySwapMax", "memory.swap.max", 0},
};

// A weight: 1..10000 (CPUWeight, IOWeight).
std::optional<std::uint64_t> parse_weight(const std::string& s)
{
    auto v = parse_digits(s);
    if (!v || *v < 1 || *v > 10000)
        return std::nullopt;
    return v;
}

} // namespace

host_totals host_totals::current()
{
    host_totals h;
    auto pages = ::sysconf(_SC_PHYS_PAGES);
    auto page = ::sysconf(_SC_PAGESIZE);
    if (page > 0)
        h.page_size = static_cast<std::uint64_t>(page);
    if (pages > 0)
        h.memory_bytes = static_cast<std::uint64_t>(pages) * h.page_size;
    // As systemd's system_tasks_max(): pid numbers run up to pid_max - 1; threads-max bounds
    // the tasks the kernel will create at all.
    auto pid_max = read_u64("/proc/sys/kernel/pid_max");
    auto threads_max = read_u64("/proc/sys/kernel/threads-max");
    h.tasks = std::min(pid_max && *pid_max > 0 ? *pid_max - 1 : infinity, threads_max.value_or(infinity));
    if (h.tasks == infinity)
        h.tasks = 0;
    return h;
}

result<std::vector<limit_setting>> parse_limits(const std::vector<limit>& limits, const host_totals* host)
{
    std::optional<host_totals> read;
    auto totals = [&]() -> const host_totals& {
        if (host)
            return *host;
        if (!read)
            read = host_totals::current();
        return *read;
    };
    std::vector<limit_setting> out;
    for (auto& l : limits) {
        limit_setting s;
        s.name = l.name;
        s.value = l.value;
        s.property.name = l.name;
        auto memory = std::find_if(std::begin(memory_kinds), std::end(memory_kinds),
                                   [&](const memory_kind& k) { return k.name == l.name; });
        if (memory != std::end(memory_kinds)) {
            s.controller = "memory";
            s.file = memory->file;
            std::uint64_t bytes = 0;
            if (l.value == "infinity") {
                bytes = infinity;
            } else if (auto pm = parse_permyriad(l.value, true)) {
                // systemd's physical_memory_scale(): whole pages, rounded down.
                auto& h = totals();
                if (h.memory_bytes == 0)
                    return bad(l, "the size of physical memory is unknown");
                auto pages = h.memory_bytes / h.page_size;
                bytes = muldiv(pages, *pm, 10000) * h.page_size;
            } else if (auto b = parse_size(l.value)) {
                bytes = *b;
                if (bytes == infinity)
                    return bad(l, "too large");
            } else {
                return bad(l, "expected a size in bytes (fractions and a K, M, G or T suffix allowed: 1.5G), "
                              "a percentage of physical memory (50%), or infinity");
            }
            if (bytes < memory->minimum)
                return bad(l, "too small");
            s.property.value = bytes;
            s.file_value = bytes == infinity ? "max" : std::to_string(bytes);
        } else if (l.name == "TasksMax") {
            s.controller = "pids";
            s.file = "pids.max";
            std::uint64_t n = 0;
            if (l.value == "infinity") {
                n = infinity;
            } else if (auto pm = parse_permyriad(l.value, true)) {
                // systemd's system_tasks_max_scale(), rounded down.
                auto& h = totals();
                if (h.tasks == 0)
                    return bad(l, "the system's task limit is unknown");
                n = muldiv(h.tasks, *pm, 10000);
            } else if (auto v = parse_digits(l.value)) {
                n = *v;
            } else {
                return bad(l, "expected a number of tasks, a percentage of the system's task limit (10%), "
                              "or infinity");
            }
            if (n == 0)
                return bad(l, "too small");
            s.property.value = n;
            s.file_value = n == infinity ? "max" : std::to_string(n);
        } else if (l.name == "CPUQuota") {
            s.controller = "cpu";
            s.file = "cpu.max";
            s.property.name = "CPUQuotaPerSecUSec";
            auto pm = parse_permyriad(l.value, false);
            if (!pm || l.value.ends_with("\u2030") || l.value.ends_with("\u2031"))
                pm.reset(); // systemd takes CPUQuota in percent only
            if (!pm)
                return bad(l, "expected a percentage of one CPU, with up to two decimals (20%, 0.5%, 200%)");
            if (*pm == 0)
                return bad(l, "too small");
            if (*pm > 1000000000) // 100000 CPUs; keeps the arithmetic below in range
                return bad(l, "too large");
            constexpr std::uint64_t usec_per_sec = 1000000;
            std::uint64_t per_sec = *pm * usec_per_sec / 10000;
            s.property.value = per_sec;
            // As systemd writes it: the period is 100 ms, made longer (up to 1 s) so that the
            // quota is at least the kernel's 1 ms.
            std::uint64_t period = std::min<std::uint64_t>(std::max<std::uint64_t>(100000, 1000 * usec_per_sec / per_sec),
                                                           usec_per_sec);
            std::uint64_t quota = std::max<std::uint64_t>(per_sec * period / usec_per_sec, 1000);
            s.file_value = std::to_string(quota) + " " + std::to_string(period);
        } else if (l.name == "CPUWeight" || l.name == "IOWeight") {
            bool cpu = l.name == "CPUWeight";
            s.controller = cpu ? "cpu" : "io";
            s.file = cpu ? "cpu.weight" : "io.weight";
            if (cpu && l.value == "idle") {
                // systemd's "idle" (v250+): weight 0 on the bus (CGROUP_WEIGHT_IDLE), and
                // cpu.idle=1 instead of cpu.weight (SCHED_IDLE for the cgroup, Linux 5.15).
                s.file = "cpu.idle";
                s.file_value = "1";
                s.property.value = std::uint64_t{0};
            } else if (auto w = parse_weight(l.value); !w) {
                return bad(l, cpu ? "expected a weight from 1 to 10000 (the default is 100), or idle"
                                  : "expected a weight from 1 to 10000 (the default is 100)");
            } else {
                s.property.value = *w;
                s.file_value = cpu ? std::to_string(*w) : "default " + std::to_string(*w);
            }
        } else if (l.name == "AllowedCPUs") {
            s.controller = "cpuset";
            s.file = "cpuset.cpus";
            auto mask = parse_cpu_list(l.value);
            if (!mask)
                return bad(l, "expected CPU numbers and ranges (0-3,5 or \"0 2 4\") below " +
                                  std::to_string(max_cpus));
            s.file_value = cpu_list(*mask);
            s.property.value = std::move(*mask);
        } else {
            std::string names;
            for (auto n : limit_names)
                names += (names.empty() ? "" : ", ") + std::string(n);
            return error::make(errc::invalid_argument, "unknown property '" + l.name + "' (supported: " + names + ")");
        }
        out.push_back(std::move(s));
    }
    return out;
}

result<std::vector<limit_setting>> check_options(const options& opts)
{
    if (opts.argv.empty())
        return error::make(errc::invalid_argument, "no command");
    if (opts.timeout && opts.timeout->count() < 0)
        return error::make(errc::invalid_argument, "negative timeout");
    if (opts.cpu_time && opts.cpu_time->count() <= 0)
        return error::make(errc::invalid_argument, "the CPU-time limit must be positive");
    if (opts.kill.signal <= 0 || opts.kill.signal >= NSIG)
        return error::make(errc::invalid_argument, "invalid signal " + std::to_string(opts.kill.signal));
    return parse_limits(opts.limits);
}

} // namespace cgrun::detail
