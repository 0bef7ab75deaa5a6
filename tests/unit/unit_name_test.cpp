#include "unit_name.hpp"

#include <doctest/doctest.h>

using namespace cgrun::detail;

TEST_CASE("generated scope names are valid, prefixed and unique")
{
    auto a = generate_scope_name("/usr/bin/git");
    auto b = generate_scope_name("/usr/bin/git");
    CHECK(a != b);
    CHECK(a.rfind("cgrun-git-", 0) == 0);
    CHECK(a.size() > 6);
    CHECK(a.substr(a.size() - 6) == ".scope");
    CHECK(validate_scope_name(a).has_value());
}

TEST_CASE("generated scope names escape odd command names and stay short")
{
    auto n = generate_scope_name("my prog/../ä" + std::string(500, 'x'));
    CHECK(n.size() < 256);
    CHECK(validate_scope_name(n).has_value());
    auto s = generate_scope_name("a b");
    CHECK(s.find("a\\x20b") != std::string::npos);
}

TEST_CASE("caller-given scope names are validated")
{
    CHECK(*validate_scope_name("build-42") == "build-42.scope");
    CHECK(*validate_scope_name("build-42.scope") == "build-42.scope");
    CHECK_FALSE(validate_scope_name("").has_value());
    CHECK_FALSE(validate_scope_name(".scope").has_value());
    CHECK_FALSE(validate_scope_name("a/b").has_value());
    CHECK_FALSE(validate_scope_name("a b").has_value());
    CHECK_FALSE(validate_scope_name("x.service").has_value());
    CHECK_FALSE(validate_scope_name(std::string(300, 'a')).has_value());
    CHECK(validate_scope_name("x.service").error().code == cgrun::errc::invalid_argument);
}
