#include <cgrun/cgrun.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <string>

using namespace cgrun;

TEST_CASE("the JSON report has every field of the schema, with nulls where unknown")
{
    run_report r;
    r.command = {"sleep", "10"};
    r.used = method::cgroup;
    r.fallbacks = {{method::scope, "no bus"}};
    r.cgroup = "/cgrun-1-1";
    r.pid = 42;
    r.signal = SIGKILL;
    r.timed_out = true;
    r.kill = kill_info{"cgroup.kill", SIGTERM, true};
    auto j = nlohmann::json::parse(to_json(r));
    CHECK(j["version"] == 1);
    CHECK(j["command"] == nlohmann::json::array({"sleep", "10"}));
    CHECK(j["method"] == "cgroup");
    CHECK(j["fallbacks"][0]["method"] == "scope");
    CHECK(j["fallbacks"][0]["reason"] == "no bus");
    CHECK(j["method_reason"].is_null());
    CHECK(j["unit"].is_null());
    CHECK(j["cgroup"] == "/cgrun-1-1");
    CHECK(j["pid"] == 42);
    CHECK(j["exit_code"].is_null());
    CHECK(j["signal"] == "KILL");
    CHECK(j["timed_out"] == true);
    CHECK(j["kill"]["mechanism"] == "cgroup.kill");
    CHECK(j["kill"]["graceful_signal"] == "TERM");
    CHECK(j["kill"]["escalated"] == true);
    CHECK(j["remaining_processes"] == 0);
    for (auto key : {"wall_time_ms", "cpu_user_ms", "cpu_system_ms"})
        CHECK(j[key].is_number());
    CHECK(j["memory_peak_bytes"].is_null());
    CHECK(j["oom_killed"] == false);
    CHECK(j["error"].is_null());
    CHECK(j["cancelled"] == false);
    CHECK(j["leftovers"] == nlohmann::json::array());
    CHECK(j["leftovers_total"] == 0);
    CHECK(j["kind"] == "run");
    CHECK(j["start_time"].is_null());
    CHECK(j["termination"] == "timeout");
    CHECK(j.size() == 25);
}

TEST_CASE("start_time is RFC 3339 in UTC with milliseconds")
{
    using namespace std::chrono;
    CHECK(rfc3339_utc(system_clock::time_point(milliseconds(0))) == "1970-01-01T00:00:00.000Z");
    CHECK(rfc3339_utc(system_clock::time_point(milliseconds(1714566896789))) == "2024-05-01T12:34:56.789Z");
    CHECK(rfc3339_utc(system_clock::time_point(microseconds(1714566896789999))) == "2024-05-01T12:34:56.789Z");
    CHECK(rfc3339_utc(system_clock::time_point(milliseconds(-1))) == "1969-12-31T23:59:59.999Z");
    CHECK(rfc3339_utc(system_clock::time_point(milliseconds(951782400000))) == "2000-02-29T00:00:00.000Z");
    run_report r;
    r.pid = 7;
    r.exit_code = 0;
    r.start_time = system_clock::time_point(milliseconds(1714566896001));
    auto j = nlohmann::json::parse(to_json(r));
    CHECK(j["start_time"] == "2024-05-01T12:34:56.001Z");
    CHECK(j["termination"] == "exited");
}

TEST_CASE("termination names one outcome, by a fixed precedence")
{
    auto of = [](auto edit) {
        run_report r;
        r.pid = 7;
        edit(r);
        auto t = termination_of(r);
        return t ? std::string(to_string(*t)) : std::string("null");
    };
    CHECK(of([](run_report& r) { r.exit_code = 3; }) == "exited");
    CHECK(of([](run_report& r) { r.signal = SIGSEGV; }) == "signaled");
    // A process of the tree was OOM-killed but the main process exited by itself.
    CHECK(of([](run_report& r) { r.exit_code = 1; r.oom_killed = true; }) == "exited");
    CHECK(of([](run_report& r) { r.signal = SIGKILL; r.oom_killed = true; }) == "oom-killed");
    CHECK(of([](run_report& r) { r.signal = SIGKILL; r.oom_killed = true; r.cancelled = true; }) == "cancelled");
    CHECK(of([](run_report& r) { r.signal = SIGKILL; r.cancelled = true; r.timed_out = true; }) == "timeout");
    CHECK(of([](run_report& r) { r.signal = SIGKILL; r.timed_out = true; r.cpu_time_exceeded = true; }) ==
          "cpu-time");
    CHECK(of([](run_report& r) { r.pid = -1; r.timed_out = true; }) == "start-failed");
    CHECK(of([](run_report&) {}) == "null"); // started, never reaped: unknown
}

TEST_CASE("leftovers are written with their command, how they escaped and their age")
{
    run_report r;
    r.leftovers = {{1234, {"sleep", "600"}, true, "setsid", 812.5}, {1235, {"sh"}, false, std::nullopt, 3}};
    r.leftovers_total = 250;
    auto j = nlohmann::json::parse(to_json(r));
    REQUIRE(j["leftovers"].size() == 2);
    CHECK(j["leftovers"][0] == nlohmann::json{{"pid", 1234},
                                              {"command", {"sleep", "600"}},
                                              {"escaped", true},
                                              {"escaped_via", "setsid"},
                                              {"age_ms", 812.5}});
    CHECK(j["leftovers"][1]["escaped"] == false);
    CHECK(j["leftovers"][1]["escaped_via"].is_null());
    CHECK(j["leftovers_total"] == 250);
}

TEST_CASE("a failed start still makes a valid report, even with invalid UTF-8")
{
    auto r = failed_report({"no\xff-such"}, "not found");
    auto j = nlohmann::json::parse(to_json(r));
    CHECK(j["error"] == "not found");
    CHECK(j["method"].is_null());
    CHECK(j["pid"].is_null());
    CHECK(j["start_time"].is_null());
    CHECK(j["termination"] == "start-failed");
    CHECK(j["kill"].is_null());
}

TEST_CASE("signals parse by name, SIG name, lower case and number")
{
    CHECK(signal_from_string("TERM") == SIGTERM);
    CHECK(signal_from_string("SIGKILL") == SIGKILL);
    CHECK(signal_from_string("hup") == SIGHUP);
    CHECK(signal_from_string("9") == 9);
    CHECK_FALSE(signal_from_string("").has_value());
    CHECK_FALSE(signal_from_string("NOPE").has_value());
    CHECK_FALSE(signal_from_string("0").has_value());
    CHECK_FALSE(signal_from_string("999").has_value());
    CHECK(signal_name(SIGINT) == "INT");
}

TEST_CASE("methods round-trip through their names")
{
    for (auto m : {method::automatic, method::scope, method::cgroup, method::pgroup, method::subreaper})
        CHECK(method_from_string(to_string(m)) == m);
    CHECK(to_string(method::subreaper) == "subreaper");
    CHECK_FALSE(method_from_string("docker").has_value());
}

TEST_CASE("errors carry what they touched")
{
    auto e = error::from_errno(EACCES, "write /x/cgroup.kill");
    CHECK(e.message() == "write /x/cgroup.kill: Permission denied");
    auto d = error::make(errc::systemd_unavailable, "connect to the system bus: No such file or directory");
    CHECK(d.message() == "connect to the system bus: No such file or directory");
    CHECK(d.code == errc::systemd_unavailable);
}

TEST_CASE("the JSON report says why auto took the cgroup method first")
{
    run_report r;
    r.used = method::cgroup;
    r.method_reason = "/system.slice/a.service is delegated to this process (trusted.delegate, set by systemd "
                      "for Delegate=yes)";
    auto j = nlohmann::json::parse(to_json(r));
    CHECK(j["method_reason"] == *r.method_reason);
    CHECK(j["fallbacks"] == nlohmann::json::array());
}
