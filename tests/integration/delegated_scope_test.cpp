// The per-spawner delegated scope (options::cgroup::delegated_scope), under a real systemd:
// created once per spawning process, its children contained, gone when the spawner is.

#include "support.hpp"

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

using namespace cgrun;
using namespace cgrun::test;
using namespace std::chrono_literals;

namespace {

options in_delegated_scope(std::vector<std::string> argv)
{
    auto o = base_options(std::move(argv));
    o.method = method::cgroup;
    o.cgroup.delegated_scope = true;
    o.stdio = {stdio_spec::null(), stdio_spec::null(), stdio_spec::null()};
    return o;
}

} // namespace

// Runs in a re-executed copy of this binary, the spawner: three children in its delegated
// scope, each described on stdout ("unit U cgroup C"), the escapee of the second as
// "escapee PID", the scope's cgroup as "scope-cgroup C" while it runs; with "kill" a third
// child with an escapee stays running and the helper dies by SIGKILL.
// argv: --delegated-scope-helper exit|kill PIDFILE
int delegated_scope_helper(int argc, char** argv)
{
    if (argc < 4)
        return 2;
    std::string mode = argv[2], pidfile = argv[3];
    std::printf("spawner %d\n", static_cast<int>(::getpid()));
    auto report = [](const run_report& r) {
        std::printf("unit %s cgroup %s method %s\n", r.unit.value_or("-").c_str(), r.cgroup.value_or("-").c_str(),
                    std::string(to_string(r.used)).c_str());
    };
    auto first = run(in_delegated_scope({"true"}));
    if (!first) {
        std::printf("error %s\n", first.error().message().c_str());
        return 1;
    }
    report(*first);
    std::string scope_cg = first->cgroup->substr(0, first->cgroup->rfind('/'));
    std::printf("scope-cgroup %s\n", scope_cg.c_str());
    std::printf("units-loaded %d\n", cgrun_units());
    char marker[8] = "";
    (void)::getxattr((cgroup2_mount() + scope_cg).c_str(), "trusted.delegate", marker, sizeof marker - 1);
    std::printf("marker %s\n", marker[0] ? marker : "none");
    // The guard holds the scope from its sub-leaf; the scope's own cgroup holds no process.
    std::ifstream guard_procs(cgroup2_mount() + scope_cg + "/guard/cgroup.procs");
    int guard = 0;
    guard_procs >> guard;
    std::ifstream comm("/proc/" + std::to_string(guard) + "/comm");
    std::string name;
    comm >> name;
    std::ifstream own_procs(cgroup2_mount() + scope_cg + "/cgroup.procs");
    int any = 0;
    std::printf("guard %s root-empty %d\n", name.empty() ? "none" : name.c_str(), (own_procs >> any) ? 0 : 1);
    if (mode == "guard-killed") {
        // With no child in it, the scope goes with its guard: the next spawn starts another.
        ::kill(guard, SIGKILL);
        for (int i = 0; i < 300 && std::filesystem::exists(cgroup2_mount() + scope_cg); ++i)
            std::this_thread::sleep_for(10ms);
        std::printf("scope-gone %d\n", std::filesystem::exists(cgroup2_mount() + scope_cg) ? 0 : 1);
        auto again = run(in_delegated_scope({"true"}));
        if (!again) {
            std::printf("error %s\n", again.error().message().c_str());
            return 1;
        }
        report(*again);
        return 0;
    }
    auto o = in_delegated_scope(
        {"sh", "-c", "setsid sh -c 'echo $$ >> " + pidfile + "; exec sleep 100' & exec sleep 100"});
    o.timeout = 300ms;
    auto second = run(o);
    if (!second) {
        std::printf("error %s\n", second.error().message().c_str());
        return 1;
    }
    report(*second);
    std::printf("timed-out %d remaining %d\n", second->timed_out ? 1 : 0, second->remaining_processes);
    for (int pid : wait_for_pids(pidfile, 1))
        std::printf("escapee %d\n", pid);
    if (mode == "kill") {
        auto third = spawn(in_delegated_scope(
            {"sh", "-c", "setsid sh -c 'echo $$ >> " + pidfile + "; exec sleep 100' & exec sleep 100"}));
        if (!third) {
            std::printf("error %s\n", third.error().message().c_str());
            return 1;
        }
        std::printf("unit %s cgroup %s method cgroup\n", third->placement().unit.value_or("-").c_str(),
                    third->placement().cgroup.value_or("-").c_str());
        auto pids = wait_for_pids(pidfile, 2);
        if (pids.size() >= 2)
            std::printf("escapee %d\n", pids[1]); // the first is the second child's
        std::fflush(stdout);
        ::raise(SIGKILL);
    }
    return 0;
}

namespace {

struct helper_run {
    int spawner = -1;
    std::vector<std::string> units, cgroups, methods;
    std::vector<int> escapees;
    std::string scope_cgroup, error;
    int units_loaded = -1, timed_out = -1, remaining = -1, root_empty = -1, scope_gone = -1;
    std::string marker, guard;
};

helper_run run_helper(const std::string& mode, const std::string& pidfile)
{
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(n > 0);
    self[n] = 0;
    std::string cmd = std::string(self) + " --delegated-scope-helper " + mode + " " + pidfile;
    helper_run h;
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[1024];
    while (std::fgets(buf, sizeof buf, p)) {
        std::istringstream line(buf);
        std::string key;
        line >> key;
        if (key == "spawner")
            line >> h.spawner;
        else if (key == "unit") {
            std::string u, c, cg, m, mv;
            line >> u >> c >> cg >> m >> mv;
            h.units.push_back(u);
            h.cgroups.push_back(cg);
            h.methods.push_back(mv);
        } else if (key == "scope-gone")
            line >> h.scope_gone;
        else if (key == "scope-cgroup")
            line >> h.scope_cgroup;
        else if (key == "marker")
            line >> h.marker;
        else if (key == "guard") {
            std::string r;
            line >> h.guard >> r >> h.root_empty;
        } else if (key == "units-loaded")
            line >> h.units_loaded;
        else if (key == "timed-out") {
            std::string r;
            line >> h.timed_out >> r >> h.remaining;
        } else if (key == "escapee") {
            int pid = 0;
            line >> pid;
            h.escapees.push_back(pid);
        } else if (key == "error")
            h.error = buf;
    }
    ::pclose(p);
    return h;
}

bool gone_within(const std::string& unit, std::chrono::milliseconds limit)
{
    auto until = std::chrono::steady_clock::now() + limit;
    while (unit_loaded(unit)) {
        if (std::chrono::steady_clock::now() > until)
            return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

void check_run(const helper_run& h, size_t children)
{
    INFO("helper error: " << h.error);
    REQUIRE(h.spawner > 0);
    std::string unit = "cgrun-" + std::to_string(h.spawner) + ".scope";
    REQUIRE(h.units.size() == children);
    for (size_t i = 0; i < children; ++i) {
        CHECK(h.units[i] == unit); // one scope for all of them
        CHECK(h.methods[i] == "cgroup");
        CHECK(h.cgroups[i].rfind(h.scope_cgroup + "/cgrun-" + std::to_string(h.spawner) + "-", 0) == 0);
    }
    CHECK(h.scope_cgroup.ends_with("/" + unit));
    CHECK(h.units_loaded == 1); // started once: the first child's run is over, the scope stays
    CHECK(h.marker == "1");     // Delegate=yes
    CHECK(h.guard == "cgrun-guard");
    CHECK(h.root_empty == 1);
    CHECK(h.timed_out == 1);
    CHECK(h.remaining == 0);
    REQUIRE(h.escapees.size() == children - 1);
    for (int pid : h.escapees)
        CHECK(wait_gone(pid, 3000));
    // The spawner is gone: its guard killed what was left and exited, systemd removed the scope.
    CHECK(gone_within(unit, 3s));
    CHECK_FALSE(std::filesystem::exists(cgroup2_mount() + h.scope_cgroup));
    kill_all(h.escapees);
}

} // namespace

TEST_CASE("the delegated scope is started once per spawner, holds its children, and goes with it")
{
    if (method_under_test() != method::scope)
        return;
    temp_dir t;
    check_run(run_helper("exit", t.file("pids")), 2);
}

TEST_CASE("the delegated scope and what is left in it go when the spawner is SIGKILLed")
{
    if (method_under_test() != method::scope)
        return;
    temp_dir t;
    check_run(run_helper("kill", t.file("pids")), 3);
}

TEST_CASE("a delegated scope that went with its killed guard is started anew by the next spawn")
{
    if (method_under_test() != method::scope)
        return;
    temp_dir t;
    auto h = run_helper("guard-killed", t.file("pids"));
    INFO("helper error: " << h.error);
    REQUIRE(h.spawner > 0);
    CHECK(h.scope_gone == 1);
    std::string unit = "cgrun-" + std::to_string(h.spawner) + ".scope";
    REQUIRE(h.units.size() == 2);
    CHECK(h.units[1] == unit);
    CHECK(h.methods[1] == "cgroup");
    CHECK(h.cgroups[1].rfind(h.scope_cgroup + "/cgrun-" + std::to_string(h.spawner) + "-", 0) == 0);
    CHECK(gone_within(unit, 3s));
}

TEST_CASE("the delegated scope excludes a cgroup parent and needs the guard")
{
    auto o = in_delegated_scope({"true"});
    o.cgroup.parent = "/x";
    auto r = run(o);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::invalid_argument);
    o = in_delegated_scope({"true"});
    o.spawner_guard = false;
    r = run(o);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::invalid_argument);
}
