// The spawner-death guard: a spawner killed with SIGKILL takes its trees along, for the
// method in CGRUN_TEST_METHOD. Spawners are forked from the test process and killed here.

#include "support.hpp"

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

using namespace cgrun;
using namespace cgrun::test;
using namespace std::chrono_literals;

namespace {

// The subreaper method's reaper kills its tree itself when the spawner dies: no guard.
bool uses_guard()
{
    return method_under_test() != method::subreaper;
}

// Kills and reaps a forked spawner when a check fails before the test did.
struct spawner_reaper {
    pid_t pid;
    ~spawner_reaper()
    {
        if (pid > 0 && ::kill(pid, SIGKILL) == 0)
            ::waitpid(pid, nullptr, 0);
    }
};

// A tree of two: the main process and a child that escapes the process group where the
// method can contain that (setsid), else stays in it. Both pids go into `f`.
options tree_of_two(const std::string& f, std::optional<std::chrono::milliseconds> timeout)
{
    std::string child = escape_proof() ? "setsid sh -c 'echo $$ >> " + f + "; exec sleep 100'"
                                       : "sh -c 'echo $$ >> " + f + "; exec sleep 100'";
    auto o = base_options({"sh", "-c", child + " & echo $$ >> " + f + "; exec sleep 100"});
    o.timeout = timeout;
    return o;
}

// Forks a spawner that runs `body` (which spawns and records), tells us it is ready, then
// waits to be killed. Returns its pid, or -1.
pid_t start_spawner(const std::function<bool()>& body)
{
    int p[2];
    if (::pipe(p) != 0)
        return -1;
    pid_t s = ::fork();
    if (s == 0) {
        ::close(p[0]);
        char ok = body() ? 1 : 0;
        (void)!::write(p[1], &ok, 1);
        for (;;)
            ::pause();
    }
    ::close(p[1]);
    char ok = 0;
    bool ready = s > 0 && ::read(p[0], &ok, 1) == 1 && ok == 1;
    ::close(p[0]);
    if (s > 0 && !ready) {
        ::kill(s, SIGKILL);
        ::waitpid(s, nullptr, 0);
        return -1;
    }
    return s;
}

// A spawner holding one tree of two (with the guard or without).
pid_t spawner_of_two(const std::string& f, bool guard)
{
    return start_spawner([&] {
        static std::vector<child> kids;
        auto o = tree_of_two(f, std::nullopt);
        o.spawner_guard = guard;
        auto c = spawn(o);
        if (!c)
            return false;
        kids.push_back(std::move(*c));
        return wait_for_pids(f, 2).size() == 2;
    });
}

// Our cgrun leaves whose name says they are `spawner`'s.
std::vector<std::string> leaves_of(pid_t spawner)
{
    std::vector<std::string> out;
    std::error_code ec;
    auto own = own_cgroup();
    for (auto& e : std::filesystem::directory_iterator(cgroup2_mount() + (own == "/" ? "" : own), ec)) {
        auto name = e.path().filename().string();
        if (name.rfind("cgrun-" + std::to_string(spawner) + "-", 0) == 0)
            out.push_back(name);
    }
    return out;
}

// The guard of process `spawner`: a process named cgrun-guard holding a pidfd of it.
pid_t guard_of(pid_t spawner)
{
    std::error_code ec;
    for (auto& p : std::filesystem::directory_iterator("/proc", ec)) {
        auto name = p.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos)
            continue;
        std::ifstream comm(p.path() / "comm");
        std::string c;
        if (!std::getline(comm, c) || c != "cgrun-guard")
            continue;
        for (auto& fd : std::filesystem::directory_iterator(p.path() / "fdinfo", ec)) {
            std::ifstream info(fd.path());
            for (std::string l; std::getline(info, l);)
                if (l == "Pid:\t" + std::to_string(spawner))
                    return std::stoi(name);
        }
    }
    return -1;
}

std::vector<std::string> lines(const std::string& file)
{
    std::vector<std::string> out;
    std::ifstream in(file);
    for (std::string l; std::getline(in, l);)
        if (!l.empty())
            out.push_back(l);
    return out;
}

} // namespace

TEST_CASE("a SIGKILLed spawner takes every tree it owned along, with and without a timeout")
{
    temp_dir t;
    auto f = t.file("pids");
    auto units = t.file("units");
    pid_t s = start_spawner([&] {
        // Children held in a static: they outlive this lambda, as in a service.
        static std::vector<child> kids;
        for (auto timeout : {std::optional<std::chrono::milliseconds>(30s), std::optional<std::chrono::milliseconds>()}) {
            auto c = spawn(tree_of_two(f, timeout));
            if (!c)
                return false;
            if (c->placement().unit)
                std::ofstream(units, std::ios::app) << *c->placement().unit << "\n";
            kids.push_back(std::move(*c));
        }
        return wait_for_pids(f, 4).size() == 4;
    });
    REQUIRE(s > 0);
    spawner_reaper reap_s{s};
    auto pids = wait_for_pids(f, 4);
    REQUIRE(pids.size() == 4);
    for (int pid : pids)
        REQUIRE(alive(pid));
    if (method_under_test() == method::cgroup)
        REQUIRE(leaves_of(s).size() == 2);

    auto killed = std::chrono::steady_clock::now();
    REQUIRE(::kill(s, SIGKILL) == 0);
    ::waitpid(s, nullptr, 0);
    reap_s.pid = -1;
    for (int pid : pids)
        CHECK(wait_gone(pid, 1000));
    auto took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - killed).count();
    MESSAGE("every process of both trees gone " << took << " ms after the spawner's SIGKILL");
    CHECK(took < 1000);
    for (int i = 0; i < 100 && !leaves_of(s).empty(); ++i)
        std::this_thread::sleep_for(10ms);
    CHECK(leaves_of(s).empty());
    for (auto& u : lines(units)) {
        for (int i = 0; i < 100 && unit_loaded(u); ++i)
            std::this_thread::sleep_for(10ms);
        CHECK_FALSE(unit_loaded(u));
    }
    kill_all(pids);
}

TEST_CASE("without the guard the tree outlives a SIGKILLed spawner (what the guard is for)")
{
    // systemd's RuntimeMaxUSec backstop covers a scope with a timeout (none here); the
    // subreaper's reaper needs no guard.
    if (method_under_test() == method::scope || !uses_guard())
        return;
    temp_dir t;
    auto f = t.file("pids");
    pid_t s = spawner_of_two(f, false);
    REQUIRE(s > 0);
    spawner_reaper reap_s{s};
    auto pids = wait_for_pids(f, 2);
    REQUIRE(pids.size() == 2);
    auto leaves = leaves_of(s);
    ::kill(s, SIGKILL);
    ::waitpid(s, nullptr, 0);
    reap_s.pid = -1;
    std::this_thread::sleep_for(300ms);
    for (int pid : pids)
        CHECK(alive(pid));
    kill_all(pids);
    for (auto& l : leaves) {
        for (int pid : pids)
            wait_gone(pid);
        auto own = own_cgroup();
        destroy_cgroup((own == "/" ? "" : own) + "/" + l);
    }
}

TEST_CASE("a forked spawner gets a guard of its own; the parent's trees live on")
{
    if (!uses_guard())
        return;
    temp_dir t;
    auto f = t.file("pids");
    auto mine = spawn(base_options({"sleep", "100"}));
    REQUIRE(mine.has_value());
    pid_t parent_guard = -1;
    for (int i = 0; i < 500 && parent_guard < 0; ++i, std::this_thread::sleep_for(2ms))
        parent_guard = guard_of(::getpid());
    CHECK(parent_guard > 0);
    pid_t s = spawner_of_two(f, true);
    REQUIRE(s > 0);
    spawner_reaper reap_s{s};
    auto pids = wait_for_pids(f, 2);
    REQUIRE(pids.size() == 2);
    pid_t theirs = -1;
    for (int i = 0; i < 500 && theirs < 0; ++i, std::this_thread::sleep_for(2ms))
        theirs = guard_of(s);
    REQUIRE(theirs > 0);
    CHECK(theirs != parent_guard);
    ::kill(s, SIGKILL);
    ::waitpid(s, nullptr, 0);
    reap_s.pid = -1;
    for (int pid : pids)
        CHECK(wait_gone(pid, 1000));
    CHECK(wait_gone(theirs, 1000)); // the fork's guard is done too
    // Ours is untouched: the parent is alive.
    CHECK(alive(mine->pid()));
    CHECK(alive(parent_guard));
    auto r = mine->kill();
    REQUIRE(r.has_value());
    CHECK(r->remaining_processes == 0);
    kill_all(pids);
}

TEST_CASE("a spawner that exits normally leaves no guard process behind")
{
    if (!uses_guard())
        return;
    temp_dir t;
    int go[2];
    REQUIRE(::pipe(go) == 0);
    pid_t s = ::fork();
    if (s == 0) {
        auto r = run(base_options({"true"}));
        char b;
        (void)!::read(go[0], &b, 1); // until the guard is seen
        ::_exit(r && r->exit_code == 0 ? 0 : 1);
    }
    REQUIRE(s > 0);
    pid_t guard = -1;
    for (int i = 0; i < 500 && guard < 0; ++i, std::this_thread::sleep_for(2ms))
        guard = guard_of(s);
    (void)!::write(go[1], "x", 1);
    ::close(go[1]);
    ::close(go[0]);
    int status = 0;
    ::waitpid(s, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    REQUIRE(guard > 0);
    CHECK(wait_gone(guard, 1000));
}
