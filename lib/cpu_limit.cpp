// The CPU-time limit: when to look at the tree's CPU time, and whether it is used up.

#include "child_state.hpp"

#include <algorithm>
#include <thread>

namespace cgrun::detail {

using namespace std::chrono_literals;

// The checks of a cpu_time limit are this far apart at most, and at least 1 ms apart.
constexpr std::chrono::microseconds cpu_check_max = 10ms;
constexpr std::chrono::microseconds cpu_check_min = 1ms;

// Reads the tree's CPU time: true when the limit is used up; else schedules the next check.
// The tree cannot use more than one CPU-second per second per online CPU, so it cannot reach
// the limit before (limit - used) / CPUs: the check sleeps that long, between 1 and 10 ms,
// and looks more often as the limit nears.
bool cpu_time_used_up(child_state& st)
{
    auto limit = std::chrono::duration_cast<std::chrono::microseconds>(*st.opts.cpu_time);
    auto used = st.held->cpu_usage();
    if (used && *used >= limit)
        return true;
    auto next = cpu_check_max;
    if (used) {
        static const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
        next = std::clamp((limit - *used) / cpus, cpu_check_min, cpu_check_max);
    }
    st.next_cpu_check = sys::now() + next;
    return false;
}

} // namespace cgrun::detail
