// Scope-specific behaviour (and the race test for every cgroup-based method).

#include "support.hpp"

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

using namespace cgrun;
using namespace cgrun::test;
using namespace std::chrono_literals;

// Runs in a re-executed copy of this binary: spawns a scope with a timeout and an escapee,
// then dies by SIGKILL without cleaning up. argv: --crash-helper PIDFILE UNITFILE
int crash_helper(int argc, char** argv)
{
    if (argc < 4)
        return 2;
    std::string pidfile = argv[2];
    options o;
    o.argv = {"sh", "-c", "setsid sh -c 'echo $$ >> " + pidfile + "; exec sleep 100' & exec sleep 100"};
    o.method = method::scope;
    o.timeout = 500ms;
    o.scope.backstop_margin = 500ms;
    o.stdio = {stdio_spec::null(), stdio_spec::null(), stdio_spec::null()};
    auto c = spawn(o);
    if (!c) {
        std::fprintf(stderr, "crash helper: %s\n", c.error().message().c_str());
        return 1;
    }
    {
        std::ofstream u(argv[3]);
        u << *c->placement().unit << "\n";
    }
    wait_for_pids(pidfile, 1);
    ::raise(SIGKILL);
    return 1;
}

TEST_CASE("a child that forks at once has every descendant inside its cgroup")
{
    if (!in_cgroup())
        return;
    for (int round = 0; round < 5; ++round) {
        auto o = base_options({"sh", "-c", "sleep 100 & sleep 100 & (sleep 100 &) ; exec sleep 100"});
        auto c = spawn(o);
        REQUIRE(c.has_value());
        REQUIRE(c->placement().cgroup.has_value());
        std::vector<int> d;
        for (int i = 0; i < 500 && d.size() < 2; ++i) {
            d = descendants(c->pid());
            std::this_thread::sleep_for(2ms);
        }
        CHECK(proc_cgroup(c->pid()) == *c->placement().cgroup);
        for (int p : d) {
            auto cg = proc_cgroup(p);
            if (!cg.empty()) // it may have exited in between
                CHECK(cg == *c->placement().cgroup);
        }
        auto r = c->kill();
        REQUIRE(r.has_value());
        CHECK(r->remaining_processes == 0);
    }
}

TEST_CASE("the scope is named, described and collected")
{
    if (method_under_test() != method::scope)
        return;
    auto o = base_options({"sleep", "100"});
    o.scope.unit = "cgrun-test-named-" + std::to_string(::getpid());
    auto c = spawn(o);
    REQUIRE(c.has_value());
    auto unit = *c->placement().unit;
    CHECK(unit == o.scope.unit + ".scope");
    CHECK(unit_loaded(unit));
    // The child is where systemd says the scope is (its ControlGroup property), and the
    // description names the command.
    CHECK(proc_cgroup(c->pid()) == *c->placement().cgroup);
    CHECK(unit_property(unit, "ControlGroup") == *c->placement().cgroup);
    CHECK(unit_property(unit, "Description") == "cgrun: sleep 100");
    CHECK(unit_property(unit, "CollectMode") == "inactive-or-failed");
    auto r = c->kill();
    REQUIRE(r.has_value());
    CHECK(r->unit == unit);
    CHECK_FALSE(unit_loaded(unit));
}

TEST_CASE("a timed-out scope is not left behind as a failed unit")
{
    if (method_under_test() != method::scope)
        return;
    auto o = base_options({"sleep", "100"});
    o.timeout = 100ms;
    auto r = run(o);
    REQUIRE(r.has_value());
    CHECK(r->timed_out);
    REQUIRE(r->unit.has_value());
    std::this_thread::sleep_for(50ms);
    CHECK_FALSE(unit_loaded(*r->unit));
}

TEST_CASE("the automatic method picks the scope under systemd outside a delegated cgroup")
{
    if (method_under_test() != method::scope)
        return;
    // with-systemd.sh runs us in a Delegate=yes unit: look like a unit without it.
    undelegated plain;
    REQUIRE_FALSE(own_delegation_marker().has_value());
    auto o = base_options({"true"});
    o.method = method::automatic;
    auto r = run(o);
    REQUIRE(r.has_value());
    CHECK(r->used == method::scope);
    CHECK(r->fallbacks.empty());
    CHECK_FALSE(r->method_reason.has_value());
}

TEST_CASE("auto in a Delegate=yes unit holds the tree in a leaf of the unit's cgroup, no scope")
{
    if (method_under_test() != method::scope)
        return;
    // systemd 252 marks a Delegate=yes unit's cgroup (with-systemd.sh's unit has it).
    auto marker = own_delegation_marker();
    REQUIRE(marker.has_value());
    temp_dir tmp;
    std::string pids = tmp.file("pids");
    int units_before = cgrun_units();
    auto o = base_options({"sh", "-c", "setsid sh -c 'echo $$ >> " + pids + "; exec sleep 100' & echo $$ >> " + pids +
                                           "; exec sleep 100"});
    o.method = method::automatic;
    o.timeout = 300ms;
    auto c = spawn(o);
    REQUIRE(c.has_value());
    auto running = wait_for_pids(pids, 2);
    REQUIRE(running.size() == 2);
    CHECK(c->placement().used == method::cgroup);
    // The unit named is the one that owns the subtree: with-systemd.sh's service, no new one.
    auto own = own_cgroup();
    CHECK(c->placement().unit == own.substr(own.rfind('/') + 1));
    REQUIRE(c->placement().cgroup.has_value());
    std::string leaf = *c->placement().cgroup;
    CHECK(leaf.rfind(own_cgroup() + "/cgrun-", 0) == 0);
    for (int pid : running)
        CHECK(proc_cgroup(pid) == leaf); // the escapee too
    CHECK(cgrun_units() == units_before); // no transient unit was started for it
    auto r = c->wait();
    REQUIRE(r.has_value());
    CHECK(r->timed_out);
    CHECK(r->used == method::cgroup);
    CHECK(r->fallbacks.empty());
    REQUIRE(r->method_reason.has_value());
    CHECK(r->method_reason->find(own_cgroup() + " is delegated") != std::string::npos);
    CHECK(r->method_reason->find(*marker) != std::string::npos);
    CHECK(r->remaining_processes == 0);
    for (int pid : running)
        CHECK(exited(pid));
    CHECK_FALSE(std::filesystem::exists(cgroup2_mount() + leaf));
    kill_all(running);
}

TEST_CASE("auto with a cgroup parent given keeps its usual order in a Delegate=yes unit")
{
    if (method_under_test() != method::scope)
        return;
    REQUIRE(own_delegation_marker().has_value());
    auto o = base_options({"true"});
    o.method = method::automatic;
    o.cgroup.parent = own_cgroup(); // named, not found by auto: not known to be ours
    auto r = run(o);
    REQUIRE(r.has_value());
    CHECK(r->used == method::scope);
    CHECK_FALSE(r->method_reason.has_value());
}

TEST_CASE("an existing unit name is an error, not a silent fallback")
{
    if (method_under_test() != method::scope)
        return;
    auto o = base_options({"sleep", "100"});
    o.scope.unit = "cgrun-test-dup-" + std::to_string(::getpid());
    auto first = spawn(o);
    REQUIRE(first.has_value());
    auto second = spawn(o);
    REQUIRE_FALSE(second.has_value());
    CHECK(second.error().code == errc::scope_failed);
    CHECK(second.error().message().find("UnitExists") != std::string::npos);
    int status;
    CHECK(::waitpid(-1, &status, WNOHANG) == 0); // only the first child exists, no zombie
    CHECK(first->kill().has_value());
}

TEST_CASE("systemd kills the tree by the deadline when the spawner was SIGKILLed")
{
    if (method_under_test() != method::scope)
        return;
    temp_dir t;
    auto pidfile = t.file("pids");
    auto unitfile = t.file("unit");
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(n > 0);
    self[n] = 0;
    auto start = std::chrono::steady_clock::now();
    pid_t helper = ::fork();
    REQUIRE(helper >= 0);
    if (helper == 0) {
        ::execl(self, self, "--crash-helper", pidfile.c_str(), unitfile.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    int status = 0;
    REQUIRE(::waitpid(helper, &status, 0) == helper);
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    auto pids = wait_for_pids(pidfile, 1, 100);
    REQUIRE(pids.size() == 1);
    std::ifstream uf(unitfile);
    std::string unit;
    uf >> unit;
    REQUIRE(!unit.empty());
    // timeout 500 ms + margin 500 ms + stop timeout 100 ms, plus slack for a busy machine.
    CHECK(wait_gone(pids[0], 5000));
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(took < 5s);
    for (int i = 0; i < 100 && unit_loaded(unit); ++i)
        std::this_thread::sleep_for(20ms);
    CHECK_FALSE(unit_loaded(unit));
    kill_all(pids);
}

TEST_CASE("a scope can be placed in a given slice")
{
    if (method_under_test() != method::scope)
        return;
    auto o = base_options({"sleep", "100"});
    o.scope.slice = "cgruntest.slice";
    auto c = spawn(o);
    REQUIRE(c.has_value());
    REQUIRE(c->placement().cgroup.has_value());
    CHECK(c->placement().cgroup->rfind("/cgruntest.slice/cgrun-sleep-", 0) == 0);
    CHECK(proc_cgroup(c->pid()) == *c->placement().cgroup);
    CHECK(c->kill().has_value());
}

TEST_CASE("a process forked after using the scope method can use it too")
{
    if (method_under_test() != method::scope)
        return;
    REQUIRE(run(base_options({"true"})).has_value()); // the cached bus connection exists now
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        auto r = run(base_options({"true"}));
        ::_exit(r && r->used == method::scope && r->exit_code == 0 ? 0 : 1);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("a stalled bus costs the bus timeout, not 25 s, and auto falls back to a cgroup")
{
    if (method_under_test() != method::scope)
        return;
    REQUIRE(run(base_options({"true"})).has_value()); // connected before the stall
    undelegated plain; // else auto would not try the scope first (with-systemd.sh: Delegate=yes)
    std::string pid_text = unit_property("dbus.service", "MainPID");
    int dbus = std::atoi(pid_text.c_str());
    REQUIRE(dbus > 1);
    REQUIRE(::kill(dbus, SIGSTOP) == 0);
    auto o = base_options({"true"});
    o.method = method::automatic;
    o.scope.bus_timeout = 300ms;
    auto start = std::chrono::steady_clock::now();
    auto r = run(o);
    auto took = std::chrono::steady_clock::now() - start;
    ::kill(dbus, SIGCONT);
    REQUIRE(r.has_value());
    CHECK(r->used == method::cgroup);
    REQUIRE(r->fallbacks.size() == 1);
    CHECK(r->fallbacks[0].tried == method::scope);
    CHECK(r->fallbacks[0].reason.find("StartTransientUnit") != std::string::npos);
    CHECK(took < 2s);
    CHECK(r->remaining_processes == 0);
    int status;
    CHECK(::waitpid(-1, &status, WNOHANG) <= 0); // the held child of the failed attempt was reaped
    // The bus works again afterwards.
    auto after = run(base_options({"true"}));
    REQUIRE(after.has_value());
    CHECK(after->used == method::scope);
}
