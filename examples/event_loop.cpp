// An event-loop user: several children at once, one poll(2) loop, no thread per child.
//
// For each running child the loop watches pidfd() (POLLIN: the main process exited),
// memory_events_fd() (POLLPRI: an OOM kill or a memory limit reached, when there is a
// cgroup) and deadline() (its timeout, as the poll timeout). When one of them fires it calls
// wait_for(0ms), which finishes the run without blocking on anything but the tree's cleanup
// and returns the report (or nullopt if the run is not over yet).

#include <cgrun/cgrun.hpp>

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

struct job {
    std::string name;
    cgrun::child c;
    std::optional<cgrun::run_report> report;
};

cgrun::options command(std::vector<std::string> argv, std::optional<std::chrono::milliseconds> timeout)
{
    cgrun::options o;
    o.argv = std::move(argv);
    o.timeout = timeout;
    o.stdio[0] = cgrun::stdio_spec::null();
    return o;
}

// Milliseconds until the nearest deadline of a running job (rounded up), or -1 for none.
int poll_timeout(const std::vector<job>& jobs)
{
    std::optional<clock_type::time_point> nearest;
    for (const auto& j : jobs)
        if (!j.report && j.c.deadline())
            nearest = nearest ? std::min(*nearest, *j.c.deadline()) : *j.c.deadline();
    if (!nearest)
        return -1;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(*nearest - clock_type::now());
    return static_cast<int>(std::max<long long>(left.count(), 0));
}

std::string describe(const cgrun::run_report& r)
{
    auto how = cgrun::termination_of(r);
    std::string s = std::string(cgrun::to_string(r.used)) + ", " +
                    (how ? std::string(cgrun::to_string(*how)) : std::string("unknown"));
    if (r.exit_code)
        s += " " + std::to_string(*r.exit_code);
    if (r.signal)
        s += " by SIG" + cgrun::signal_name(*r.signal);
    return s + ", " + std::to_string(r.leftovers_total) + " leftover(s), " +
           std::to_string(r.wall_time_ms) + " ms";
}

} // namespace

int main()
{
    std::vector<job> jobs;
    auto start = [&](std::string name, cgrun::options o) {
        auto c = cgrun::spawn(std::move(o));
        if (!c) {
            std::fprintf(stderr, "event_loop: %s: %s\n", name.c_str(), c.error().message().c_str());
            return false;
        }
        jobs.push_back({std::move(name), std::move(*c), std::nullopt});
        return true;
    };
    if (!start("exits", command({"sh", "-c", "sleep 0.1; exit 3"}, std::nullopt)) ||
        !start("times out", command({"sleep", "300"}, 300ms)) ||
        !start("leaves a daemon", command({"sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & sleep 0.2"}, 10s)))
        return 1;

    for (;;) {
        std::vector<pollfd> fds;
        std::vector<std::size_t> owner; // fds[i] belongs to jobs[owner[i]]
        for (std::size_t i = 0; i < jobs.size(); ++i) {
            if (jobs[i].report)
                continue;
            fds.push_back({jobs[i].c.pidfd(), POLLIN, 0});
            owner.push_back(i);
            if (int mem = jobs[i].c.memory_events_fd(); mem >= 0) {
                fds.push_back({mem, POLLPRI, 0});
                owner.push_back(i);
            }
        }
        if (fds.empty())
            break;
        if (::poll(fds.data(), fds.size(), poll_timeout(jobs)) < 0) {
            if (errno == EINTR)
                continue;
            std::fprintf(stderr, "event_loop: poll: %s\n", std::strerror(errno));
            return 1;
        }
        std::vector<bool> due(jobs.size(), false);
        for (std::size_t k = 0; k < fds.size(); ++k)
            if (fds[k].revents != 0)
                due[owner[k]] = true;
        for (std::size_t i = 0; i < jobs.size(); ++i)
            if (!jobs[i].report && jobs[i].c.deadline() && clock_type::now() >= *jobs[i].c.deadline())
                due[i] = true;
        for (std::size_t i = 0; i < jobs.size(); ++i) {
            if (!due[i] || jobs[i].report)
                continue;
            auto r = jobs[i].c.wait_for(0ms); // the run ends here: report, or nullopt if not yet
            if (!r) {
                std::fprintf(stderr, "event_loop: %s: %s\n", jobs[i].name.c_str(), r.error().message().c_str());
                return 1;
            }
            if (*r) {
                jobs[i].report = std::move(**r);
                std::printf("%-16s %s\n", jobs[i].name.c_str(), describe(*jobs[i].report).c_str());
            }
        }
    }

    // What each job must have ended as (pgroup cannot see the setsid daemon to list it).
    const auto& exits = *jobs[0].report;
    const auto& late = *jobs[1].report;
    const auto& daemon = *jobs[2].report;
    bool ok = exits.exit_code == 3 && late.timed_out && daemon.exit_code == 0 &&
              (daemon.used == cgrun::method::pgroup || daemon.leftovers_total >= 1);
    for (const auto& j : jobs)
        ok = ok && j.report->remaining_processes == 0 && !j.report->error;
    return ok ? 0 : 1;
}
