// The tool's command-line rules that look at several options at once (tools/command_line.cpp).

#include "command_line.hpp"

#include <doctest/doctest.h>

#include <csignal>
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
