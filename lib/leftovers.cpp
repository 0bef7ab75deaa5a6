// What a tree still held when its run ended: each process's command line, whether it had
// escaped the main process's session or group, and its age, from /proc.

#include "leftovers.hpp"

#include "sys.hpp"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

namespace cgrun::detail {

namespace {

std::vector<std::string> command_of(pid_t pid)
{
    std::vector<std::string> argv;
    auto raw = sys::read_file(AT_FDCWD, "/proc/" + std::to_string(pid) + "/cmdline");
    if (raw) {
        size_t start = 0;
        while (start < raw->size()) {
            size_t end = raw->find('\0', start);
            if (end == std::string::npos)
                end = raw->size();
            argv.push_back(raw->substr(start, end - start));
            start = end + 1;
        }
    }
    if (argv.empty()) {
        // Kernel threads and processes that cleared their argv: the name the kernel keeps.
        auto comm = sys::read_file(AT_FDCWD, "/proc/" + std::to_string(pid) + "/comm");
        if (comm) {
            while (!comm->empty() && comm->back() == '\n')
                comm->pop_back();
            argv.push_back(*comm);
        }
    }
    return argv;
}

double uptime_ms()
{
    timespec ts{};
    ::clock_gettime(CLOCK_BOOTTIME, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

} // namespace

void record_leftovers(std::vector<pid_t> pids, const origin& main, std::vector<leftover>& out, int& total)
{
    std::sort(pids.begin(), pids.end());
    pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
    static const double tick_ms = 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
    double now = uptime_ms();
    out.clear();
    // Every pid counts (a cgroup's or our own list holds no zombies); only the first
    // max_leftovers are read from /proc, so listing stays cheap before a kill.
    total = static_cast<int>(pids.size());
    for (pid_t pid : pids) {
        if (out.size() >= max_leftovers)
            break;
        auto st = sys::process_stat(pid);
        if (!st || st->state == 'Z' || st->state == 'X') {
            --total; // gone, or dying already
            continue;
        }
        leftover l;
        l.pid = pid;
        l.command = command_of(pid);
        if (st->sid != main.sid)
            l.escaped_via = "setsid";
        else if (st->pgid != main.pgid)
            l.escaped_via = "setpgid";
        l.escaped = l.escaped_via.has_value();
        l.age_ms = std::max(0.0, now - static_cast<double>(st->start_ticks) * tick_ms);
        out.push_back(std::move(l));
    }
}

} // namespace cgrun::detail
