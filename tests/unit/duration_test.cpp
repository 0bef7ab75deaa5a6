// The tool's DURATION parser (tools/duration.cpp), compiled into the unit tests.

#include "duration.hpp"

#include <doctest/doctest.h>

using cgrun::tool::parse_duration;
using std::chrono::milliseconds;

TEST_CASE("durations: units, fractions and rounding")
{
    CHECK(parse_duration("1.5") == milliseconds(1500));
    CHECK(parse_duration("250ms") == milliseconds(250));
    CHECK(parse_duration("2m") == milliseconds(120000));
    CHECK(parse_duration("1h") == milliseconds(3600000));
    CHECK(parse_duration("1d") == milliseconds(86400000));
    CHECK(parse_duration("0.5d") == milliseconds(43200000));
    CHECK(parse_duration("3s") == milliseconds(3000));
    CHECK(parse_duration(".2") == milliseconds(200));
    CHECK(parse_duration("5.") == milliseconds(5000));
    CHECK(parse_duration("0") == milliseconds(0));
    CHECK(parse_duration("0.0001h") == milliseconds(360));
    CHECK(parse_duration("0.0001") == milliseconds(1));  // below 1 ms rounds up
    CHECK(parse_duration("1.0001") == milliseconds(1001)); // up, never down
    CHECK(parse_duration("0.1") == milliseconds(100));     // not 101: 0.1 * 1000 is exact enough
    CHECK(parse_duration("99999999999999999999") == milliseconds(100LL * 365 * 24 * 3600 * 1000));
}

TEST_CASE("durations: malformed text is refused")
{
    for (auto bad : {"", "abc", "-1", "5x", "1e3", "inf", "nan", "1.2.3", "0x10", " 5", "5 s", ".", "ms", "1.5.ms", "d", "1dd", "1D"})
        CHECK_MESSAGE(!parse_duration(bad).has_value(), bad);
}
