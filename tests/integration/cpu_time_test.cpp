// The CPU-time limit (options::cpu_time), for the method in CGRUN_TEST_METHOD: scope and
// cgroup stop a busy tree once it used up its CPU time; subreaper and pgroup refuse it.

#include "support.hpp"

#include <doctest/doctest.h>

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <string>

using namespace cgrun;
using namespace cgrun::test;
using namespace std::chrono_literals;

namespace {

// N busy loops, each in a session of its own (setsid: beyond a process group), each
// writing its pid to `f` first; the main process waits for them.
std::vector<std::string> busy_tree(int n, const std::string& f)
{
    std::string s;
    for (int i = 0; i < n; ++i)
        s += "setsid sh -c 'echo $$ >> " + f + "; while :; do :; done' & ";
    return {"sh", "-c", s + "wait"};
}

double cpu_ms(const run_report& r)
{
    return r.cpu_user_ms + r.cpu_system_ms;
}

void check_stopped_at_limit(int n)
{
    temp_dir t;
    auto f = t.file("pids");
    auto o = base_options(busy_tree(n, f));
    o.cpu_time = 300ms;
    o.timeout = 30s; // a backstop for a broken limit, far off
    auto start = std::chrono::steady_clock::now();
    auto r = run(o);
    auto took = std::chrono::steady_clock::now() - start;
    if (!in_cgroup()) {
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == errc::controller_unavailable);
        CHECK(r.error().message().find("CPU-time limit") != std::string::npos);
        CHECK_FALSE(std::filesystem::exists(f)); // nothing of the command ran
        return;
    }
    REQUIRE(r.has_value());
    CHECK(r->cpu_time_exceeded);
    CHECK_FALSE(r->timed_out);
    CHECK_FALSE(r->cancelled);
    CHECK(r->signal == SIGKILL);
    CHECK(r->remaining_processes == 0);
    CHECK_FALSE(r->error.has_value());
    REQUIRE(r->kill.has_value());
    // At least the limit; the overrun is what n processes use between two checks (at
    // most 10 ms apart, 1 ms near the limit) and until the kill. Generous for a loaded host.
    CHECK(cpu_ms(*r) >= 300);
    CHECK(cpu_ms(*r) < 300 + 100);
    MESSAGE(n << " busy process(es): " << cpu_ms(*r) << " ms of CPU for a limit of 300 ms, wall "
              << r->wall_time_ms << " ms");
    CHECK(took < 10s);
    auto pids = wait_for_pids(f, static_cast<size_t>(n), 100);
    for (int pid : pids)
        CHECK(exited(pid));
    kill_all(pids);
}

} // namespace

TEST_CASE("cpu_time: one busy process is stopped once it used up the limit")
{
    check_stopped_at_limit(1);
}

TEST_CASE("cpu_time: four busy setsid processes are stopped at their total, not each one's")
{
    check_stopped_at_limit(4);
}

TEST_CASE("cpu_time: a tree that stays under the limit is not stopped")
{
    if (!in_cgroup())
        return; // refused: the tests above show it
    auto o = base_options({"sh", "-c", "sleep 0.3; exit 3"});
    o.cpu_time = 1s;
    auto r = run(o);
    REQUIRE(r.has_value());
    CHECK(r->exit_code == 3);
    CHECK_FALSE(r->cpu_time_exceeded);
    CHECK_FALSE(r->timed_out);
    CHECK_FALSE(r->kill.has_value());
}

TEST_CASE("cpu_time: wait_for() in slices and deadline() for an event loop")
{
    if (!in_cgroup())
        return;
    auto o = base_options({"sh", "-c", "while :; do :; done"});
    o.cpu_time = 200ms;
    auto c = spawn(o);
    REQUIRE(c.has_value());
    REQUIRE(c->deadline().has_value()); // the next check, though there is no timeout
    CHECK(*c->deadline() <= std::chrono::steady_clock::now() + 10ms);
    std::optional<run_report> r;
    auto give_up = std::chrono::steady_clock::now() + 10s;
    while (!r && std::chrono::steady_clock::now() < give_up) {
        auto w = c->wait_for(5ms);
        REQUIRE(w.has_value());
        r = *w;
    }
    REQUIRE(r.has_value());
    CHECK(r->cpu_time_exceeded);
    CHECK(cpu_ms(*r) >= 200);
}

TEST_CASE("cpu_time: zero or negative is refused")
{
    auto o = base_options({"true"});
    o.cpu_time = 0ms;
    auto r = spawn(o);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::invalid_argument);
}
