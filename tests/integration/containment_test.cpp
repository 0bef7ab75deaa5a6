// Kill scenarios, run for the method in CGRUN_TEST_METHOD (cgroup, pgroup, scope or subreaper).

#include "support.hpp"

#include "cgroup_fs.hpp"
#include "sys.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

using namespace cgrun;
using namespace cgrun::test;
using namespace std::chrono_literals;

namespace {

// Writes its own pid to F, then sleeps: the body of most escapees.
std::string record(const std::string& f)
{
    return "echo $$ >> " + f + "; exec sleep 100";
}

void check_clean(const run_report& r)
{
    CHECK(r.remaining_processes == 0);
    CHECK_FALSE(r.error.has_value());
    if (r.error)
        MESSAGE("error: " << *r.error);
    if (r.cgroup)
        CHECK_FALSE(std::filesystem::exists(cgroup2_mount() + *r.cgroup));
    if (method_under_test() == method::cgroup)
        CHECK(cgrun_cgroups_under(own_cgroup()).empty());
    if (r.unit && r.used == method::scope) // (a cgroup's unit owns the subtree: it stays)
        CHECK_FALSE(unit_loaded(*r.unit));
}

} // namespace

TEST_CASE("the method asked for is the method used")
{
    auto r = run(base_options({"true"}));
    REQUIRE(r.has_value());
    CHECK(r->used == method_under_test());
    CHECK(r->exit_code == 0);
    CHECK(r->fallbacks.empty());
    if (method_under_test() == method::scope) {
        REQUIRE(r->unit.has_value());
        CHECK(r->unit->rfind("cgrun-true-", 0) == 0);
    }
    CHECK(r->cgroup.has_value() == in_cgroup());
    check_clean(*r);
}

TEST_CASE("auto tries the cgroup method first exactly when the own cgroup is marked delegated")
{
    if (method_under_test() != method::cgroup)
        return;
    auto o = base_options({"true"});
    o.method = method::automatic;
    auto r = run(o);
    REQUIRE(r.has_value());
    if (auto marker = own_delegation_marker()) { // cgroup-in-unit: with-systemd.sh's Delegate=yes unit
        CHECK(r->used == method::cgroup);
        CHECK(r->fallbacks.empty());
        REQUIRE(r->method_reason.has_value());
        CHECK(r->method_reason->find(*marker) != std::string::npos);
        REQUIRE(r->cgroup.has_value());
        CHECK(r->cgroup->rfind(own_cgroup() + "/cgrun-", 0) == 0);
    } else { // the host: as before, scope first (it fails without systemd), then cgroup
        CHECK_FALSE(r->method_reason.has_value());
        CHECK((r->used == method::scope || (!r->fallbacks.empty() && r->fallbacks[0].tried == method::scope)));
    }
    check_clean(*r);
}

TEST_CASE("the remembered default parent is looked up again once the spawner has moved out of it and it is gone")
{
    if (method_under_test() != method::cgroup)
        return;
    auto mnt = cgroup2_mount();
    std::string base = own_cgroup() == "/" ? "" : own_cgroup();
    std::string a = base + "/cgrun-test-a-" + std::to_string(::getpid());
    std::string b = base + "/cgrun-test-b-" + std::to_string(::getpid());
    REQUIRE(::mkdir((mnt + a).c_str(), 0755) == 0);
    REQUIRE(::mkdir((mnt + b).c_str(), 0755) == 0);
    auto move_to = [&](const std::string& cg) {
        std::ofstream(mnt + cg + "/cgroup.procs") << ::getpid() << std::endl;
        return proc_cgroup(::getpid()) == cg;
    };
    // In a child of ours, so that the test process stays where it is; without the guard,
    // which would stay in a. Exit codes say which step failed.
    auto o = base_options({"true"});
    o.spawner_guard = false;
    pid_t pid = ::fork();
    if (pid == 0) {
        if (!move_to(a))
            ::_exit(10);
        auto r1 = run(o);
        if (!r1 || !r1->cgroup || r1->cgroup->rfind(a + "/cgrun-", 0) != 0)
            ::_exit(11); // the first run remembers a
        if (!move_to(b) || ::rmdir((mnt + a).c_str()) != 0)
            ::_exit(12);
        auto r2 = run(o);
        if (!r2 || r2->used != method::cgroup || !r2->cgroup || r2->cgroup->rfind(b + "/cgrun-", 0) != 0)
            ::_exit(13); // a is gone: b, where we are now
        ::_exit(cgrun_cgroups_under(b).empty() ? 0 : 14);
    }
    REQUIRE(pid > 0);
    int st = 0;
    REQUIRE(::waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
    // Both go, also after a failure (a straggler may take a moment to leave).
    auto gone = [&](const std::string& cg) {
        for (int i = 0; i < 200; ++i) {
            if (::rmdir((mnt + cg).c_str()) == 0 || errno == ENOENT)
                return true;
            std::this_thread::sleep_for(10ms);
        }
        return false;
    };
    CHECK(gone(a));
    CHECK(gone(b));
}

TEST_CASE("exit codes and signals of the main process are reported")
{
    auto r = run(base_options({"sh", "-c", "exit 3"}));
    REQUIRE(r.has_value());
    CHECK(r->exit_code == 3);
    CHECK_FALSE(r->signal.has_value());
    CHECK_FALSE(r->timed_out);
    CHECK_FALSE(r->kill.has_value());

    auto s = run(base_options({"sh", "-c", "kill -SEGV $$"}));
    REQUIRE(s.has_value());
    CHECK(s->signal == SIGSEGV);
    CHECK_FALSE(s->exit_code.has_value());
    check_clean(*s);
}

TEST_CASE("a setsid escapee is killed at the timeout (pgroup: it survives, the known limitation)")
{
    temp_dir t;
    auto f = t.file("pids");
    auto o = base_options({"sh", "-c", "setsid sh -c '" + record(f) + "' & exec sleep 100"});
    o.timeout = 5s;
    auto c = spawn(o);
    REQUIRE(c.has_value());
    auto pids = wait_for_pids(f, 1);
    REQUIRE(pids.size() == 1);
    REQUIRE(alive(pids[0]));
    // Shorten the wait: the deadline is checked by the library; terminate == timeout path.
    auto r = c->kill();
    REQUIRE(r.has_value());
    REQUIRE(r->kill.has_value());
    if (escape_proof()) {
        CHECK(exited(pids[0]));
        if (method_under_test() == method::subreaper)
            CHECK(r->kill->mechanism == "subreaper");
        else
            CHECK(r->kill->mechanism == (std::getenv("CGRUN_TEST_NO_CGROUP_KILL") ? "freeze-kill" : "cgroup.kill"));
        check_clean(*r);
    } else {
        CHECK(r->kill->mechanism == "killpg");
        CHECK(alive(pids[0])); // setsid left the process group: pgroup cannot reach it
        kill_all(pids);
    }
}

TEST_CASE("the timeout fires by itself and reports timed_out")
{
    temp_dir t;
    auto f = t.file("pids");
    auto o = base_options({"sh", "-c", "setsid sh -c '" + record(f) + "' & exec sleep 100"});
    o.timeout = 300ms;
    auto start = std::chrono::steady_clock::now();
    auto r = run(o);
    auto took = std::chrono::steady_clock::now() - start;
    REQUIRE(r.has_value());
    CHECK(r->timed_out);
    CHECK(r->signal == SIGKILL);
    CHECK(took >= 300ms);
    CHECK(took < 3s);
    auto pids = wait_for_pids(f, 1, 100);
    REQUIRE(pids.size() == 1);
    if (escape_proof()) {
        CHECK(exited(pids[0]));
        check_clean(*r);
    } else {
        kill_all(pids);
    }
}

TEST_CASE("a double-forked daemon is killed")
{
    temp_dir t;
    auto f = t.file("pids");
    // The subshell forks the daemon and exits: the daemon is reparented away from the tree.
    auto o = base_options({"sh", "-c", "(setsid sh -c '" + record(f) + "' &); exec sleep 100"});
    auto c = spawn(o);
    REQUIRE(c.has_value());
    auto pids = wait_for_pids(f, 1);
    REQUIRE(pids.size() == 1);
    auto tree = descendants(c->pid());
    CHECK(std::find(tree.begin(), tree.end(), pids[0]) == tree.end()); // not a descendant any more
    auto r = c->kill();
    REQUIRE(r.has_value());
    if (escape_proof()) {
        CHECK(exited(pids[0]));
        check_clean(*r);
    } else {
        CHECK(alive(pids[0]));
        kill_all(pids);
    }
}

TEST_CASE("a double-forked daemon dies at the timeout and when the main process exits by itself")
{
    if (!escape_proof())
        return; // pgroup: the daemon survives (asserted above)
    temp_dir t;
    auto f = t.file("pids");
    // Timeout: the main process still runs.
    auto o = base_options({"sh", "-c", "(setsid sh -c '" + record(f) + "' &); exec sleep 100"});
    o.timeout = 500ms;
    auto r = run(o);
    REQUIRE(r.has_value());
    CHECK(r->timed_out);
    CHECK(r->signal == SIGKILL);
    auto pids = wait_for_pids(f, 1, 100);
    REQUIRE(pids.size() == 1);
    CHECK(exited(pids[0]));
    check_clean(*r);

    // The main process exits by itself once the daemon runs: the daemon is killed then.
    auto g = t.file("pids2");
    auto e = base_options({"sh", "-c", "(setsid sh -c '" + record(g) + "' &); while [ ! -s " + g +
                                           " ]; do sleep 0.01; done; exit 4"});
    e.timeout = 20s;
    auto s = run(e);
    REQUIRE(s.has_value());
    CHECK_FALSE(s->timed_out);
    CHECK(s->exit_code == 4);
    REQUIRE(s->kill.has_value());
    auto pids2 = wait_for_pids(g, 1, 100);
    REQUIRE(pids2.size() == 1);
    CHECK(exited(pids2[0]));
    check_clean(*s);
}

TEST_CASE("a fork storm at kill time is killed to the last process")
{
    if (!escape_proof())
        return; // a pgroup kill of a storm is best effort only
    auto o = base_options({"sh", "-c", "while :; do sleep 100 & done"});
    auto c = spawn(o);
    REQUIRE(c.has_value());
    std::this_thread::sleep_for(300ms);
    auto before = descendants(c->pid());
    CHECK(before.size() > 10);
    auto r = c->kill();
    REQUIRE(r.has_value());
    for (int p : before)
        CHECK(exited(p));
    check_clean(*r);
}

TEST_CASE("stopped processes are killed")
{
    temp_dir t;
    auto f = t.file("pids");
    auto o = base_options(
        {"sh", "-c", "sh -c 'echo $$ >> " + f + "; kill -STOP $$; sleep 100' & kill -STOP $$; sleep 100"});
    o.kill.grace = 2s; // graceful phase: TERM + CONT reach stopped processes
    auto c = spawn(o);
    REQUIRE(c.has_value());
    auto pids = wait_for_pids(f, 1);
    REQUIRE(pids.size() == 1);
    for (int i = 0; i < 500 && proc_state(pids[0]) != 'T'; ++i)
        std::this_thread::sleep_for(2ms);
    REQUIRE(proc_state(pids[0]) == 'T');
    auto r = c->terminate();
    REQUIRE(r.has_value());
    CHECK(exited(pids[0]));
    REQUIRE(r->kill.has_value());
    CHECK(r->kill->graceful_signal == SIGTERM);
    CHECK_FALSE(r->kill->escalated); // SIGCONT after SIGTERM let them die without SIGKILL
    CHECK(r->wall_time_ms < 1500);
    check_clean(*r);
}

TEST_CASE("a child that ignores SIGTERM is killed after the grace period")
{
    temp_dir t;
    auto f = t.file("pids");
    auto o = base_options({"sh", "-c", "trap '' TERM; echo $$ >> " + f + "; while :; do sleep 0.05; done"});
    o.timeout = 200ms;
    o.kill.grace = 400ms;
    auto r = run(o);
    REQUIRE(r.has_value());
    CHECK(r->timed_out);
    REQUIRE(r->kill.has_value());
    CHECK(r->kill->escalated);
    CHECK(r->kill->graceful_signal == SIGTERM);
    CHECK(r->signal == SIGKILL);
    CHECK(r->wall_time_ms >= 550);
    CHECK(r->wall_time_ms < 3000);
    check_clean(*r);
}

TEST_CASE("a child that honours SIGTERM is not escalated")
{
    auto o = base_options({"sleep", "100"});
    o.timeout = 200ms;
    o.kill.grace = 5s;
    auto r = run(o);
    REQUIRE(r.has_value());
    CHECK(r->timed_out);
    REQUIRE(r->kill.has_value());
    CHECK_FALSE(r->kill->escalated);
    CHECK(r->signal == SIGTERM);
    CHECK(r->wall_time_ms < 2000);
    check_clean(*r);
}

TEST_CASE("what the main process leaves running is killed when it exits")
{
    temp_dir t;
    auto f = t.file("pids");
    // pgroup can only see what stays in the group, so no setsid there.
    std::string daemon = escape_proof() ? "setsid sh -c '" + record(f) + "'" : "sh -c '" + record(f) + "'";
    auto o = base_options({"sh", "-c", daemon + " & while [ ! -s " + f + " ]; do sleep 0.01; done; exit 3"});
    auto r = run(o);
    REQUIRE(r.has_value());
    auto pids = wait_for_pids(f, 1, 100);
    REQUIRE(pids.size() == 1);
    CHECK(r->exit_code == 3);
    CHECK_FALSE(r->timed_out);
    CHECK(r->kill.has_value());
    CHECK(exited(pids[0]));
    check_clean(*r);
}

TEST_CASE("keep_orphans leaves what the main process started running")
{
    temp_dir t;
    auto f = t.file("pids");
    std::string daemon = escape_proof() ? "setsid sh -c '" + record(f) + "'" : "sh -c '" + record(f) + "'";
    auto o = base_options({"sh", "-c", daemon + " & while [ ! -s " + f + " ]; do sleep 0.01; done; exit 0"});
    o.keep_orphans = true;
    auto r = run(o);
    REQUIRE(r.has_value());
    auto pids = wait_for_pids(f, 1, 100);
    REQUIRE(pids.size() == 1);
    CHECK(r->exit_code == 0);
    CHECK_FALSE(r->kill.has_value());
    CHECK(alive(pids[0]));
    CHECK(r->remaining_processes == 1);
    kill_all(pids);
    if (method_under_test() == method::cgroup && r->cgroup) {
        wait_gone(pids[0]);
        destroy_cgroup(*r->cgroup);
    }
}

TEST_CASE("destroying a running child kills and reaps its whole tree")
{
    temp_dir t;
    auto f = t.file("pids");
    std::string daemon = escape_proof() ? "setsid sh -c '" + record(f) + "'" : "sh -c '" + record(f) + "'";
    std::optional<std::string> cg;
    int main_pid = 0;
    {
        auto c = spawn(base_options({"sh", "-c", daemon + " & exec sleep 100"}));
        REQUIRE(c.has_value());
        main_pid = c->pid();
        cg = c->placement().cgroup;
        REQUIRE(wait_for_pids(f, 1).size() == 1);
    }
    auto pids = wait_for_pids(f, 1, 100);
    CHECK(exited(pids[0]));
    CHECK(proc_state(main_pid) == 0); // reaped, not a zombie
    if (method_under_test() == method::cgroup)
        CHECK(cgrun_cgroups_under(own_cgroup()).empty());
}

TEST_CASE("the Gitea case: git's git-remote-http grandchild dies with the timeout")
{
    if (std::system("command -v git >/dev/null 2>&1") != 0) {
        MESSAGE("git is not installed");
        CHECK(false);
        return;
    }
    // A listener that accepts into its backlog and never answers.
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(s >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(s, 16) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
    int port = ntohs(addr.sin_port);

    temp_dir t;
    auto o = base_options({"git", "clone", "http://127.0.0.1:" + std::to_string(port) + "/x.git", t.file("x")});
    o.stdio = {stdio_spec::null(), stdio_spec::null(), stdio_spec::null()};
    o.env = std::vector<std::string>{"PATH=/usr/bin:/bin", "HOME=" + t.path(), "GIT_TERMINAL_PROMPT=0"};
    o.timeout = 10s;
    auto c = spawn(o);
    REQUIRE(c.has_value());
    int helper = 0;
    for (int i = 0; i < 1000 && !helper; ++i) {
        for (int p : descendants(c->pid())) {
            std::ifstream comm("/proc/" + std::to_string(p) + "/comm");
            std::string name;
            comm >> name;
            if (name.rfind("git-remote-http", 0) == 0)
                helper = p;
        }
        if (!helper)
            std::this_thread::sleep_for(5ms);
    }
    REQUIRE(helper != 0);
    auto r = c->kill();
    REQUIRE(r.has_value());
    CHECK(exited(helper));
    check_clean(*r);
    ::close(s);
}

TEST_CASE("threads spawn, wait and kill different children at once")
{
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int i = 0; i < 4; ++i) {
        threads.emplace_back([&, i] {
            for (int k = 0; k < 5; ++k) {
                auto o = base_options({"sh", "-c", (i % 2) ? "exit 7" : "exec sleep 100"});
                if (i % 2 == 0)
                    o.timeout = 50ms;
                auto r = run(o);
                if (r && ((i % 2) ? r->exit_code == 7 : r->timed_out) && r->remaining_processes == 0)
                    ++ok;
            }
        });
    }
    for (auto& th : threads)
        th.join();
    CHECK(ok == 20);
    if (method_under_test() == method::cgroup)
        CHECK(cgrun_cgroups_under(own_cgroup()).empty());
}

TEST_CASE("wall time and CPU time are measured")
{
    auto o = base_options({"sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"});
    auto r = run(o);
    REQUIRE(r.has_value());
    CHECK(r->exit_code == 0);
    CHECK(r->cpu_user_ms + r->cpu_system_ms > 10);
    CHECK(r->wall_time_ms >= r->cpu_user_ms * 0.5);
    std::ifstream ctl(cgroup2_mount() + "/cgroup.controllers");
    std::string controllers((std::istreambuf_iterator<char>(ctl)), std::istreambuf_iterator<char>());
    if (controllers.find("memory") == std::string::npos || !in_cgroup())
        CHECK_FALSE(r->memory_peak_bytes.has_value()); // null, never a made-up number
}

TEST_CASE("an event loop can poll the pidfd and collect the report without blocking")
{
    auto o = base_options({"sh", "-c", "sleep 0.2; exit 5"});
    auto c = spawn(o);
    REQUIRE(c.has_value());
    auto early = c->wait_for(0ms);
    REQUIRE(early.has_value());
    CHECK_FALSE(early->has_value()); // still running: no report, no blocking
    pollfd p{c->pidfd(), POLLIN, 0};
    REQUIRE(::poll(&p, 1, 5000) == 1);
    auto r = c->wait_for(0ms);
    REQUIRE(r.has_value());
    REQUIRE(r->has_value());
    CHECK((*r)->exit_code == 5);
    auto again = c->wait(); // the same report again
    REQUIRE(again.has_value());
    CHECK(again->exit_code == 5);
}

TEST_CASE("a leaf left by a crashed spawner is swept by the next spawn")
{
    if (method_under_test() != method::cgroup)
        return;
    // A pid that does not exist: a dead child of ours, reaped.
    pid_t dead = ::fork();
    if (dead == 0)
        ::_exit(0);
    REQUIRE(dead > 0);
    ::waitpid(dead, nullptr, 0);
    auto stale = cgroup2_mount() + (own_cgroup() == "/" ? "" : own_cgroup()) + "/cgrun-" + std::to_string(dead) + "-1";
    REQUIRE(::mkdir(stale.c_str(), 0755) == 0);
    // The sweep runs once per parent per process: this test binary may have swept already,
    // so run a fresh process (the CLI-free way: re-exec ourselves for one test case).
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(n > 0);
    self[n] = 0;
    std::string cmd = std::string(self) + " --test-case='the method asked for*' >/dev/null 2>&1";
    CHECK(std::system(cmd.c_str()) == 0);
    bool gone = !std::filesystem::exists(stale);
    CHECK(gone);
    if (!gone)
        ::rmdir(stale.c_str());
}

TEST_CASE("a task that cannot die in time gives a bounded report, and a later wait finishes the cleanup")
{
    // A task frozen by the cgroup v1 freezer sleeps uninterruptibly, SIGKILL or not, until
    // it is thawed: a real "cannot die" task on hybrid hosts.
    const std::string v1 = "/sys/fs/cgroup/freezer";
    if (!std::filesystem::exists(v1 + "/tasks")) {
        MESSAGE("no cgroup v1 freezer here (the cgroup-unkillable test skips on such hosts)");
        return;
    }
    std::string fz = v1 + "/cgrun-test-" + std::to_string(::getpid());
    REQUIRE(::mkdir(fz.c_str(), 0755) == 0);
    auto write = [](const std::string& f, const std::string& v) {
        std::ofstream o(f);
        o << v;
        o.flush();
        return o.good();
    };
    auto o = base_options({"sleep", "100"});
    o.kill.kill_wait = 300ms;
    auto c = spawn(o);
    REQUIRE(c.has_value());
    REQUIRE(write(fz + "/tasks", std::to_string(c->pid())));
    REQUIRE(write(fz + "/freezer.state", "FROZEN"));
    for (int i = 0; i < 200 && proc_state(c->pid()) != 'D'; ++i)
        std::this_thread::sleep_for(5ms);
    REQUIRE(proc_state(c->pid()) == 'D');

    auto start = std::chrono::steady_clock::now();
    auto r = c->kill();
    auto took = std::chrono::steady_clock::now() - start;
    REQUIRE(r.has_value());
    CHECK(took < 3s); // bounded: kill_wait twice at most, not a hang
    CHECK(r->remaining_processes == 1);
    REQUIRE(r->error.has_value());
    CHECK(r->error->find("did not die") != std::string::npos);
    CHECK_FALSE(r->exit_code.has_value());

    REQUIRE(write(fz + "/freezer.state", "THAWED"));
    CHECK(wait_gone(c->pid()));
    std::this_thread::sleep_for(50ms);
    auto again = c->wait(); // retries the cleanup: reap, remove the cgroup
    REQUIRE(again.has_value());
    CHECK(again->remaining_processes == 0);
    CHECK(again->signal == SIGKILL);
    CHECK_FALSE(again->error.has_value());
    if (again->cgroup)
        CHECK_FALSE(std::filesystem::exists(cgroup2_mount() + *again->cgroup));
    CHECK(proc_state(again->pid) == 0); // reaped
    ::rmdir(fz.c_str());
}

TEST_CASE("sub-cgroups the payload made are killed and removed with its cgroup")
{
    if (method_under_test() != method::cgroup)
        return;
    temp_dir t;
    auto f = t.file("pids");
    // The payload (root) makes a child cgroup of its own and moves a daemon into it.
    auto o = base_options({"sh", "-c",
                           "cg=$(sed -n 's/^0:://p' /proc/self/cgroup); mkdir \"$MNT$cg/sub\" && "
                           "setsid sh -c \"echo \\$\\$ > $MNT$cg/sub/cgroup.procs; echo \\$\\$ >> " + f +
                               "; exec sleep 100\" & exec sleep 100"});
    o.env = std::vector<std::string>{"PATH=/usr/bin:/bin", "MNT=" + cgroup2_mount()};
    auto c = spawn(o);
    REQUIRE(c.has_value());
    auto pids = wait_for_pids(f, 1);
    REQUIRE(pids.size() == 1);
    for (int i = 0; i < 200 && proc_cgroup(pids[0]) != *c->placement().cgroup + "/sub"; ++i)
        std::this_thread::sleep_for(5ms);
    REQUIRE(proc_cgroup(pids[0]) == *c->placement().cgroup + "/sub");
    auto r = c->kill();
    REQUIRE(r.has_value());
    CHECK(exited(pids[0]));
    CHECK_FALSE(r->error.has_value());
    CHECK_FALSE(std::filesystem::exists(cgroup2_mount() + *r->cgroup));
}

TEST_CASE("a cgroup removed under us (as systemd removes an emptied scope) counts as empty")
{
    if (method_under_test() != method::cgroup)
        return;
    auto mnt = sys::open_dir(AT_FDCWD, cgroup2_mount());
    REQUIRE(mnt.has_value());
    std::string name = "cgrun-test-gone-" + std::to_string(::getpid());
    auto cg = detail::cgroup_dir::create(mnt->get(), own_cgroup(), name);
    REQUIRE(cg.has_value());
    // Gone before the first look at cgroup.events (the open fails with ENOENT)...
    REQUIRE(::rmdir((cgroup2_mount() + cg->path()).c_str()) == 0);
    auto pop = cg->populated();
    REQUIRE(pop.has_value());
    CHECK_FALSE(*pop);
    auto empty = cg->wait_empty(sys::now() + 100ms);
    REQUIRE(empty.has_value());
    CHECK(*empty);
    auto killed = cg->kill_all();
    CHECK(killed.has_value());
    // ...and after it (the read fails with ENODEV).
    auto again = detail::cgroup_dir::create(mnt->get(), own_cgroup(), name);
    REQUIRE(again.has_value());
    REQUIRE(again->populated().has_value());
    REQUIRE(::rmdir((cgroup2_mount() + again->path()).c_str()) == 0);
    auto pop2 = again->populated();
    REQUIRE(pop2.has_value());
    CHECK_FALSE(*pop2);
    CHECK(again->kill_all().has_value());
    CHECK(cgrun_cgroups_under(own_cgroup()).empty());
}
