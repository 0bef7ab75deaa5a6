// The tool's command-line rules that look at several options at once (tools/command_line.cpp).

#include "command_line.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <algorithm>
#include <initializer_list>
#include <vector>

using namespace cgrun::tool;
using std::chrono::milliseconds;

namespace {

parse_result parse(std::initializer_list<std::string_view> words)
{
    std::vector<std::string_view> args{"cgrun"};
    args.insert(args.end(), words);
    return parse_command_line(args);
}

parse_result parse(const std::vector<std::string>& words)
{
    std::vector<std::string_view> args{"cgrun"};
    args.insert(args.end(), words.begin(), words.end());
    return parse_command_line(args);
}

std::vector<std::string> argv(std::initializer_list<const char*> words)
{
    return {words.begin(), words.end()};
}

} // namespace

TEST_CASE("timeout(1) form: a leading DURATION operand is the timeout")
{
    auto r = parse({"10", "make", "-j4"});
    REQUIRE_FALSE(r.problem);
    CHECK(r.cmd.opts.timeout == milliseconds(10000));
    CHECK(r.cmd.opts.argv == argv({"make", "-j4"}));

    r = parse({"-v", "1.5m", "sleep", "1"});
    CHECK(r.cmd.opts.timeout == milliseconds(90000));
    CHECK(r.cmd.opts.argv == argv({"sleep", "1"}));

    r = parse({"--", "2d", "true"}); // operands after "--" too, as timeout(1)
    CHECK(r.cmd.opts.timeout == milliseconds(2 * 86400000LL));
    CHECK(r.cmd.opts.argv == argv({"true"}));

    r = parse({"0", "true"}); // 0 = no limit, as -t 0
    CHECK_FALSE(r.cmd.opts.timeout);
    CHECK(r.cmd.opts.argv == argv({"true"}));
}

TEST_CASE("timeout(1) form: not taken with -t, with one operand, or when not a DURATION")
{
    auto r = parse({"-t", "5", "10", "x"});
    CHECK(r.cmd.opts.timeout == milliseconds(5000));
    CHECK(r.cmd.opts.argv == argv({"10", "x"}));

    r = parse({"-t", "0", "10", "x"}); // -t 0 is given too: "10" is the command
    CHECK_FALSE(r.cmd.opts.timeout);
    CHECK(r.cmd.opts.argv == argv({"10", "x"}));

    r = parse({"10"});
    CHECK_FALSE(r.cmd.opts.timeout);
    CHECK(r.cmd.opts.argv == argv({"10"}));

    r = parse({"./10", "x"});
    CHECK_FALSE(r.cmd.opts.timeout);
    CHECK(r.cmd.opts.argv == argv({"./10", "x"}));

    r = parse({"--check"});
    CHECK_FALSE(r.problem);
}

TEST_CASE("-s without -k: the signal at the deadline, SIGKILL after the default grace")
{
    auto r = parse({"-s", "INT", "-t", "5", "cmd"});
    REQUIRE_FALSE(r.problem);
    CHECK(r.cmd.opts.kill.signal == SIGINT);
    CHECK(r.cmd.opts.kill.grace == default_signal_grace);

    r = parse({"-s", "INT", "-k", "2", "cmd"});
    CHECK(r.cmd.opts.kill.grace == milliseconds(2000));

    r = parse({"-t", "5", "cmd"}); // no -s: SIGKILL at once, as before
    CHECK(r.cmd.opts.kill.grace == milliseconds(0));

    r = parse({"-s", "INT", "-k", "0", "cmd"}); // the signal would be dropped: refused
    REQUIRE(r.problem);
    CHECK(r.problem->find("--signal=INT") != std::string::npos);

    r = parse({"-s", "KILL", "-k", "0", "cmd"});
    CHECK_FALSE(r.problem);
}

TEST_CASE("--preserve-status and --foreground")
{
    auto r = parse({"--preserve-status", "--foreground", "1", "cmd"});
    REQUIRE_FALSE(r.problem);
    CHECK(r.cmd.preserve_status);
    CHECK(r.cmd.opts.argv == argv({"cmd"}));
    CHECK_FALSE(parse({"cmd"}).cmd.preserve_status);
}

TEST_CASE("options of one method imply it; another -m is a usage error")
{
    using cgrun::method;
    for (auto words : {std::initializer_list<std::string_view>{"--user", "cmd"},
                       {"--system", "cmd"}, {"--slice", "a.slice", "cmd"},
                       {"--unit", "u", "cmd"}, {"-m", "auto", "--system", "cmd"},
                       {"--system", "-m", "scope", "cmd"}}) {
        auto r = parse(words);
        REQUIRE_FALSE(r.problem);
        CHECK(r.cmd.opts.method == method::scope);
    }
    auto r = parse({"--cgroup-parent", "/a", "cmd"});
    REQUIRE_FALSE(r.problem);
    CHECK(r.cmd.opts.method == method::cgroup);
    CHECK(parse({"cmd"}).cmd.opts.method == method::automatic);

    for (auto words : {std::initializer_list<std::string_view>{"-m", "cgroup", "--unit", "u", "cmd"},
                       {"--user", "-m", "pgroup", "cmd"},
                       {"-m", "scope", "--cgroup-parent", "/a", "cmd"},
                       {"--slice", "a.slice", "--cgroup-parent", "/a", "cmd"}}) {
        r = parse(words);
        REQUIRE(r.problem);
        CHECK(r.problem->find("method") != std::string::npos);
    }
    // --check proves what the host offers: nothing is implied there.
    r = parse({"--check", "--system"});
    CHECK_FALSE(r.problem);
    CHECK(r.cmd.opts.method == method::automatic);
}

TEST_CASE("--check and --setup-cgroup refuse the options they would ignore")
{
    for (std::vector<std::string> run_only : {std::vector<std::string>{"--uid", "0"}, {"--gid", "0"}, {"-E", "A=1"},
                                              {"-d", "/"}, {"--nice", "1"}, {"-t", "5"}, {"-p", "MemoryMax=1G"},
                                              {"--keep-orphans"}, {"--description", "x"}, {"--unit", "x"}}) {
        for (std::string action : {"--check", "--setup-cgroup"}) {
            auto words = run_only;
            words.insert(words.begin(), action);
            auto r = parse(words);
            INFO(words[0] << " " << words[1]);
            REQUIRE(r.problem);
            CHECK(r.problem->find("has no effect with " + action) != std::string::npos);
        }
    }
    // What --check reads, but --setup-cgroup does not.
    auto r = parse({"--setup-cgroup", "-m", "cgroup"});
    REQUIRE(r.problem);
    CHECK(r.problem->find("--method has no effect with --setup-cgroup") != std::string::npos);
    r = parse({"--check", "-m", "scope", "--system", "--slice", "x.slice", "--cgroup-parent", "/", "-v", "--json", "-"});
    CHECK_FALSE(r.problem);
    r = parse({"--setup-cgroup", "--cgroup-parent", "/", "--json", "-", "-q", "-v"});
    CHECK_FALSE(r.problem);
}

TEST_CASE("-p takes every supported property by name, values are checked by the library")
{
    for (auto name : cgrun::limit_names) {
        std::string arg = std::string(name) + "=1";
        auto r = parse({"-p", arg, "true"});
        CHECK_MESSAGE(!r.problem, arg);
        REQUIRE(r.cmd.opts.limits.size() == 1);
        CHECK(r.cmd.opts.limits[0].name == name);
        CHECK(help_text().find(std::string(name) + "=") != std::string_view::npos);
    }
    auto r = parse({"-p", "MemoryMax=1.5G", "-p", "CPUQuota=0.5%", "true"});
    REQUIRE_FALSE(r.problem);
    CHECK(r.cmd.opts.limits.size() == 2);
    CHECK(r.cmd.opts.limits[1].value == "0.5%");
    r = parse({"-p", "CPUQuotaPerSecUSec=5000", "true"});
    REQUIRE(r.problem);
    CHECK(r.problem->find("AllowedCPUs") != std::string::npos);
}

TEST_CASE("systemd-run habits: -E, -d, --uid, --gid, --nice, --description")
{
    auto r = parse({"-E", "FOO=bar", "--setenv=NAME", "-E", "X=a=b", "-d", "/tmp/x", "--uid", "nobody",
                    "--gid=65534", "--nice", "-5", "--description", "my job", "cmd"});
    REQUIRE_FALSE(r.problem);
    CHECK(r.cmd.setenv == argv({"FOO=bar", "NAME", "X=a=b"}));
    CHECK(r.cmd.opts.cwd == "/tmp/x");
    CHECK(r.cmd.run_user == "nobody");
    CHECK(r.cmd.run_group == "65534");
    CHECK(r.cmd.opts.nice == -5);
    CHECK(r.cmd.opts.scope.description == "my job");
    CHECK(r.cmd.opts.argv == argv({"cmd"}));
    // --description describes a scope if there is one; it selects no method.
    CHECK(r.cmd.opts.method == cgrun::method::automatic);
    CHECK(parse({"-m", "cgroup", "--description", "x", "cmd"}).cmd.opts.method == cgrun::method::cgroup);

    r = parse({"-dE", "A=1", "cmd"}); // as getopt: -d takes the rest of the word
    CHECK(r.cmd.opts.cwd == "E");
    CHECK(r.cmd.opts.argv == argv({"A=1", "cmd"}));

    for (auto bad : {"20", "-21", "x", "7x", "", "+"}) {
        r = parse({"--nice", bad, "cmd"});
        REQUIRE_MESSAGE(r.problem, bad);
        CHECK(r.problem->find("nice") != std::string::npos);
    }
    CHECK(parse({"--nice=19", "cmd"}).cmd.opts.nice == 19);
    CHECK(parse({"--nice=-20", "cmd"}).cmd.opts.nice == -20);
    CHECK_FALSE(parse({"cmd"}).cmd.opts.nice);
    for (auto words : {std::initializer_list<std::string_view>{"-E", "", "cmd"}, {"-E", "=x", "cmd"},
                       {"-d", "", "cmd"}, {"--uid=", "cmd"}, {"--gid", "", "cmd"},
                       {"--description=", "cmd"}})
        CHECK(parse(words).problem);
}

TEST_CASE("resolve_run_options: the environment and the identity")
{
    const char* base[] = {"PATH=/bin", "FOO=old", "KEEP=1", "HOME=/root", nullptr};

    auto r = parse({"cmd"});
    CHECK_FALSE(resolve_run_options(r.cmd, base));
    CHECK_FALSE(r.cmd.opts.env); // nothing changes it: the caller's, as it is at spawn
    CHECK_FALSE(r.cmd.opts.run_as.uid);

    r = parse({"-E", "FOO=new", "-E", "KEEP", "-E", "UNSET_HERE", "-E", "FOO=newer", "cmd"});
    CHECK_FALSE(resolve_run_options(r.cmd, base));
    REQUIRE(r.cmd.opts.env);
    auto& env = *r.cmd.opts.env;
    auto count = [&](std::string_view entry) { return std::count(env.begin(), env.end(), entry); };
    CHECK(count("FOO=newer") == 1);
    CHECK(count("FOO=old") == 0);
    CHECK(count("FOO=new") == 0);
    CHECK(count("KEEP=1") == 1);
    CHECK(count("UNSET_HERE=") == 1); // as systemd-run: an unset NAME is passed empty
    CHECK(count("PATH=/bin") == 1);

    r = parse({"--uid", "root", "--gid", "0", "cmd"});
    CHECK_FALSE(resolve_run_options(r.cmd, base));
    CHECK(r.cmd.opts.run_as.uid == 0u);
    CHECK(r.cmd.opts.run_as.gid == 0u);
    REQUIRE(r.cmd.opts.env); // the login variables of the user, as systemd-run sets them
    CHECK(std::count(r.cmd.opts.env->begin(), r.cmd.opts.env->end(), "USER=root") == 1);
    CHECK(std::count(r.cmd.opts.env->begin(), r.cmd.opts.env->end(), "LOGNAME=root") == 1);

    r = parse({"--uid", "root", "-E", "HOME=/elsewhere", "cmd"}); // -E wins over the login variables
    CHECK_FALSE(resolve_run_options(r.cmd, base));
    CHECK(std::count(r.cmd.opts.env->begin(), r.cmd.opts.env->end(), "HOME=/elsewhere") == 1);
    CHECK(std::count(r.cmd.opts.env->begin(), r.cmd.opts.env->end(), "HOME=/root") == 0);

    r = parse({"--uid", "4242424", "--gid", "4242", "cmd"}); // numbers need no database entry
    CHECK_FALSE(resolve_run_options(r.cmd, base));
    CHECK(r.cmd.opts.run_as.uid == 4242424u);
    CHECK(r.cmd.opts.run_as.gid == 4242u);
    CHECK_FALSE(r.cmd.opts.env);

    r = parse({"--uid", "no-such-user-cgrun", "cmd"});
    auto problem = resolve_run_options(r.cmd, base);
    REQUIRE(problem);
    CHECK(problem->find("'no-such-user-cgrun'") != std::string::npos);
    r = parse({"--gid", "no-such-group-cgrun", "cmd"});
    problem = resolve_run_options(r.cmd, base);
    REQUIRE(problem);
    CHECK(problem->find("'no-such-group-cgrun'") != std::string::npos);
}
