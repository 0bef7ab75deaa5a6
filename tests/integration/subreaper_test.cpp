// What only the subreaper method has: its reaper process (where it sits, that it goes), and
// that the tree dies with a spawner that is killed. Other methods skip these.

#include "support.hpp"

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

using namespace cgrun;
using namespace cgrun::test;
using namespace std::chrono_literals;

namespace {

bool subreaper() { return method_under_test() == method::subreaper; }

// Field `n` (1-based, after the command name) of /proc/<pid>/stat: 1 = state, 2 = ppid, 3 = pgrp.
int stat_field(int pid, int n)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto close = s.rfind(')');
    if (close == std::string::npos)
        return -1;
    std::istringstream rest(s.substr(close + 2));
    std::string field;
    for (int i = 1; i <= n && rest >> field; ++i)
        if (i == n)
            return i == 1 ? field[0] : std::stoi(field);
    return -1;
}

std::string escapees(const std::string& f)
{
    std::string rec = "echo $$ >> " + f + "; exec sleep 100";
    return "setsid sh -c '" + rec + "' & (setsid sh -c '" + rec + "' &); ";
}

} // namespace

TEST_CASE("the reaper is the command's parent, in a process group of its own, and gone after the run")
{
    if (!subreaper())
        return;
    auto c = spawn(base_options({"sleep", "100"}));
    REQUIRE(c.has_value());
    int reaper = stat_field(c->pid(), 2);
    REQUIRE(reaper > 0);
    CHECK(reaper != ::getpid());
    CHECK(stat_field(reaper, 2) == ::getpid());   // our child
    CHECK(stat_field(reaper, 3) == reaper);       // its own group, not ours
    CHECK(stat_field(c->pid(), 3) == c->pid());   // the command leads its own group
    CHECK(c->placement().used == method::subreaper);
    CHECK_FALSE(c->placement().cgroup.has_value());
    auto r = c->kill();
    REQUIRE(r.has_value());
    CHECK(r->signal == SIGKILL);
    CHECK(r->remaining_processes == 0);
    CHECK_FALSE(r->error.has_value());
    CHECK(proc_state(reaper) == 0); // exited and reaped, not a zombie
    CHECK(proc_state(c->pid()) == 0);
    int status;
    CHECK(::waitpid(-1, &status, WNOHANG) == -1);
}

TEST_CASE("escapees forked in a loop while the tree is killed die to the last one")
{
    if (!subreaper())
        return;
    temp_dir t;
    auto f = t.file("pids");
    // Each round leaves one more setsid'd, re-parented escapee behind.
    auto o = base_options({"sh", "-c", "while :; do (setsid sh -c 'echo $$ >> " + f + "; exec sleep 100' &); done"});
    auto c = spawn(o);
    REQUIRE(c.has_value());
    auto pids = wait_for_pids(f, 20);
    REQUIRE(pids.size() >= 20);
    auto r = c->kill();
    REQUIRE(r.has_value());
    CHECK(r->remaining_processes == 0);
    CHECK_FALSE(r->error.has_value());
    for (int p : wait_for_pids(f, 1, 100))
        CHECK(exited(p));
}

TEST_CASE("a spawner killed by SIGKILL takes its tree with it")
{
    if (!subreaper())
        return;
    temp_dir t;
    auto f = t.file("pids");
    for (bool with_timeout : {false, true}) {
        CAPTURE(with_timeout);
        std::ofstream(f, std::ios::trunc).close();
        pid_t spawner = ::fork(); // this test binary has no other threads
        REQUIRE(spawner >= 0);
        if (spawner == 0) {
            auto o = base_options({"sh", "-c", escapees(f) + "exec sleep 100"});
            if (with_timeout)
                o.timeout = 60s;
            auto c = spawn(o);
            if (!c)
                ::_exit(1);
            wait_for_pids(f, 2);
            ::raise(SIGKILL);
            ::_exit(2);
        }
        auto pids = wait_for_pids(f, 2);
        int status = 0;
        REQUIRE(::waitpid(spawner, &status, 0) == spawner);
        REQUIRE(WIFSIGNALED(status));
        auto killed = std::chrono::steady_clock::now();
        REQUIRE(pids.size() == 2);
        for (int p : pids)
            CHECK(wait_gone(p, 1000));
        CHECK(std::chrono::steady_clock::now() - killed < 1s);
    }
}

TEST_CASE("a detached tree keeps running without its reaper, and leaves no zombie")
{
    if (!subreaper())
        return;
    temp_dir t;
    auto f = t.file("pids");
    int main_pid = 0, reaper = 0;
    {
        auto c = spawn(base_options({"sh", "-c", escapees(f) + "exec sleep 100"}));
        REQUIRE(c.has_value());
        main_pid = c->pid();
        reaper = stat_field(main_pid, 2);
        REQUIRE(wait_for_pids(f, 2).size() == 2);
        c->detach();
    }
    auto pids = wait_for_pids(f, 2, 100);
    CHECK(alive(main_pid));
    for (int p : pids)
        CHECK(alive(p));
    CHECK(proc_state(reaper) == 0);
    int status;
    CHECK(::waitpid(-1, &status, WNOHANG) == -1);
    pids.push_back(main_pid);
    kill_all(pids);
    for (int p : pids)
        wait_gone(p);
}
