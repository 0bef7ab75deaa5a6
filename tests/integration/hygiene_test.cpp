// What the child gets (fds, signals, stdio, environment) and what the parent keeps (nothing).

#include "support.hpp"

#include "spawn.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

using namespace cgrun;
using namespace cgrun::test;
using namespace std::chrono_literals;

namespace {
std::string read_all(int fd)
{
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0)
        out.append(buf, static_cast<size_t>(n));
    return out;
}

std::string run_capture(options o, run_report* rep = nullptr)
{
    o.stdio[1] = stdio_spec::pipe();
    auto c = spawn(std::move(o));
    REQUIRE(c.has_value());
    auto out = c->take_stdout();
    std::string text = read_all(out.get());
    auto r = c->wait();
    REQUIRE(r.has_value());
    if (rep)
        *rep = *r;
    return text;
}
} // namespace

TEST_CASE("the child gets only fds 0-2 and inherit_fds, even when the parent leaks non-CLOEXEC fds")
{
    int leaked = ::open("/dev/null", O_RDONLY); // no O_CLOEXEC on purpose
    REQUIRE(leaked >= 0);
    int pass[2];
    REQUIRE(::pipe(pass) == 0);
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(n > 0);
    self[n] = 0;
    auto o = base_options({self, "--print-fds"});
    o.inherit_fds = {pass[1]};
    auto text = run_capture(o);
    CHECK(text == "0 1 2 " + std::to_string(pass[1]) + " \n");
    ::close(leaked);
    ::close(pass[0]);
    ::close(pass[1]);
}

TEST_CASE("the child's signal mask is empty and no signal is ignored")
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGUSR1);
    REQUIRE(::pthread_sigmask(SIG_BLOCK, &block, &old) == 0);
    auto old_pipe = ::signal(SIGPIPE, SIG_IGN);
    auto old_int = ::signal(SIGINT, SIG_IGN);
    auto text = run_capture(base_options({"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"}));
    ::signal(SIGPIPE, old_pipe);
    ::signal(SIGINT, old_int);
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    CHECK(text == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST_CASE("yes | head terminates: SIGPIPE is default in the child")
{
    auto old_pipe = ::signal(SIGPIPE, SIG_IGN);
    auto o = base_options({"sh", "-c", "yes | head -1"});
    o.timeout = 5s;
    auto text = run_capture(o);
    ::signal(SIGPIPE, old_pipe);
    CHECK(text == "y\n");
}

TEST_CASE("the child runs in its own process group")
{
    run_report rep;
    auto text = run_capture(base_options({"sh", "-c", "ps -o pgid= -p $$; echo $$"}), &rep);
    int pgid = 0, pid = 0;
    std::sscanf(text.c_str(), "%d %d", &pgid, &pid);
    CHECK(pgid == pid);
    CHECK(pid == rep.pid);
    CHECK(pgid != ::getpgrp());
}

TEST_CASE("environment, working directory and stdin are what the options say")
{
    temp_dir t;
    auto o = base_options({"sh", "-c", "echo \"$FOO\"; pwd; cat"});
    o.env = std::vector<std::string>{"FOO=bar baz", "PATH=/usr/bin:/bin"};
    o.cwd = t.path();
    o.stdio[0] = stdio_spec::pipe();
    o.stdio[1] = stdio_spec::pipe();
    auto c = spawn(o);
    REQUIRE(c.has_value());
    auto in = c->take_stdin();
    REQUIRE(::write(in.get(), "input\n", 6) == 6);
    in.reset();
    auto out = c->take_stdout();
    auto text = read_all(out.get());
    auto r = c->wait();
    REQUIRE(r.has_value());
    CHECK(text == "bar baz\n" + t.path() + "\ninput\n");
}

TEST_CASE("a command that does not exist is exec_not_found, and nothing is left")
{
    int fds = open_fd_count();
    auto r = spawn(base_options({"no-such-command-cgrun-test"}));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::exec_not_found);
    auto a = spawn(base_options({"/nonexistent/dir/cmd"}));
    REQUIRE_FALSE(a.has_value());
    CHECK(a.error().code == errc::exec_not_found);
    CHECK(a.error().message().find("/nonexistent/dir/cmd") != std::string::npos);
    CHECK(open_fd_count() == fds);
    if (method_under_test() == method::cgroup)
        CHECK(cgrun_cgroups_under(own_cgroup()).empty());
    int status;
    CHECK(::waitpid(-1, &status, WNOHANG) == -1); // no child, no zombie
}

TEST_CASE("a file that is not executable is exec_not_executable")
{
    temp_dir t;
    auto f = t.file("script");
    {
        std::ofstream out(f);
        out << "#!/bin/sh\necho hi\n";
    }
    ::chmod(f.c_str(), 0644);
    auto r = spawn(base_options({f}));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::exec_not_executable);
    auto d = spawn(base_options({t.path()}));
    REQUIRE_FALSE(d.has_value());
    CHECK(d.error().code == errc::exec_not_executable);
    auto w = spawn(base_options({"true"}));
    REQUIRE(w.has_value());
    CHECK(w->wait().has_value());
}

TEST_CASE("a bad working directory is an exec error, not a hang or a leak")
{
    auto o = base_options({"true"});
    o.cwd = "/nonexistent-cgrun-dir";
    auto r = spawn(o);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::exec_failed);
    CHECK(r.error().message().find("chdir") != std::string::npos);
}

TEST_CASE("many runs leak no fds, no zombies and no cgroups")
{
    (void)run(base_options({"true"})); // warm up caches (the bus connection, the mount fd)
    int fds = open_fd_count();
    for (int i = 0; i < 30; ++i) {
        auto o = base_options({"sh", "-c", i % 3 == 0 ? "sleep 100 & exec sleep 100" : "exit 0"});
        o.timeout = 20ms;
        auto r = run(o);
        REQUIRE(r.has_value());
        CHECK(r->remaining_processes == 0);
    }
    CHECK(open_fd_count() == fds);
    int status;
    CHECK(::waitpid(-1, &status, WNOHANG) == -1);
    if (method_under_test() == method::cgroup)
        CHECK(cgrun_cgroups_under(own_cgroup()).empty());
}

TEST_CASE("bad options are rejected before anything starts")
{
    auto o = base_options({});
    CHECK(spawn(o).error().code == errc::invalid_argument);
    auto l = base_options({"true"});
    l.limits = {{"Bogus", "1"}};
    CHECK(spawn(l).error().code == errc::invalid_argument);
    auto u = base_options({"true"});
    u.scope.unit = "bad/name";
    if (method_under_test() == method::scope)
        CHECK(spawn(u).error().code == errc::invalid_argument);
}

TEST_CASE("a limit whose controller is missing fails and names the controller")
{
    std::ifstream ctl(cgroup2_mount() + own_cgroup() + "/cgroup.controllers");
    std::string controllers((std::istreambuf_iterator<char>(ctl)), std::istreambuf_iterator<char>());
    if (in_cgroup() && controllers.find("memory") != std::string::npos) {
        MESSAGE("memory controller available here: enforcement is tested elsewhere");
        return;
    }
    auto o = base_options({"true"});
    o.limits = {{"MemoryMax", "10M"}};
    auto r = spawn(o);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::controller_unavailable);
    CHECK(r.error().message().find("memory") != std::string::npos);
    if (method_under_test() == method::cgroup)
        CHECK(cgrun_cgroups_under(own_cgroup()).empty());
}

TEST_CASE("a held child that is dropped before release is killed and reaped, not left a zombie")
{
    detail::spawn_request req;
    req.argv = {"/bin/sleep", "100"};
    req.hold = true;
    pid_t pid = -1;
    {
        auto sp = detail::start_process(std::move(req));
        REQUIRE(sp.has_value());
        pid = sp->pid;
        CHECK(proc_state(pid) != 0);
    } // dropped: as when an attempt is given up or an exception unwinds
    CHECK(proc_state(pid) == 0); // neither running nor a zombie
    int status;
    CHECK(::waitpid(-1, &status, WNOHANG) == -1);
}

TEST_CASE("run_as and nice: the command runs as the user, the spawner stays dumpable")
{
    if (::geteuid() != 0)
        return; // only root may give another identity (the CLI tests check the refusal)
    REQUIRE(::prctl(PR_GET_DUMPABLE) == 1);
    auto o = base_options({"sh", "-c", "id -u; id -g; id -G; cut -d' ' -f19 /proc/self/stat; pwd"});
    o.run_as.uid = 4242424; // no passwd entry needed with gid and groups given
    o.run_as.gid = 4243;
    o.run_as.groups = std::vector<gid_t>{4244, 4245};
    o.nice = 3;
    o.cwd = "/";
    CHECK(run_capture(o) == "4242424\n4243\n4243 4244 4245\n3\n/\n");
    // The kernel makes a task's mm non-dumpable when it changes its ids: had the child shared
    // ours, this process would have lost its core dumps.
    CHECK(::prctl(PR_GET_DUMPABLE) == 1);

    o.run_as = {};
    o.run_as.uid = 4242424; // without gid: needs a passwd entry, refused before anything runs
    auto c = spawn(o);
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().message().find("4242424") != std::string::npos);
}
