#include "limits.hpp"

#include <doctest/doctest.h>

using namespace cgrun;
using namespace cgrun::detail;

TEST_CASE("MemoryMax takes bytes with binary suffixes or infinity")
{
    auto r = parse_limits({{"MemoryMax", "10M"}});
    REQUIRE(r.has_value());
    CHECK(r->at(0).file == "memory.max");
    CHECK(r->at(0).controller == "memory");
    CHECK(r->at(0).file_value == "10485760");
    CHECK(r->at(0).property_value == 10485760u);
    CHECK(parse_limits({{"MemoryMax", "infinity"}})->at(0).file_value == "max");
    CHECK_FALSE(parse_limits({{"MemoryMax", "10X"}}).has_value());
    CHECK_FALSE(parse_limits({{"MemoryMax", "-1"}}).has_value());
    CHECK_FALSE(parse_limits({{"MemoryMax", ""}}).has_value());
}

TEST_CASE("TasksMax and CPUQuota map to pids.max and cpu.max")
{
    auto t = parse_limits({{"TasksMax", "5"}, {"CPUQuota", "20%"}});
    REQUIRE(t.has_value());
    CHECK(t->at(0).file == "pids.max");
    CHECK(t->at(0).file_value == "5");
    CHECK(t->at(1).file == "cpu.max");
    CHECK(t->at(1).file_value == "20000 100000");
    CHECK(t->at(1).property == "CPUQuotaPerSecUSec");
    CHECK(t->at(1).property_value == 200000u);
    CHECK_FALSE(parse_limits({{"TasksMax", "0"}}).has_value());
    CHECK_FALSE(parse_limits({{"CPUQuota", "20"}}).has_value());
}

TEST_CASE("unknown properties are rejected with their name")
{
    auto r = parse_limits({{"IOWeight", "10"}});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == errc::invalid_argument);
    CHECK(r.error().message().find("IOWeight") != std::string::npos);
}
