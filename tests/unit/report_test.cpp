#include <cgrun/cgrun.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <csignal>

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
    CHECK(j.size() == 21);
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
    auto r = failed_report({"no\xff-such"}, method::pgroup, "not found");
    auto j = nlohmann::json::parse(to_json(r));
    CHECK(j["error"] == "not found");
    CHECK(j["pid"].is_null());
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
