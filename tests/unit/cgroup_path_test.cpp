#include "cgroup_path.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>

using namespace cgrun::detail;

namespace {
std::string fixture(const std::string& name)
{
    std::ifstream in(std::string(CGRUN_FIXTURES) + "/" + name);
    REQUIRE(in.good());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}
} // namespace

TEST_CASE("the cgroup2 mount of a pure v2 host is /sys/fs/cgroup")
{
    CHECK(cgroup2_mount(fixture("mountinfo-v2")) == std::optional<std::string>("/sys/fs/cgroup"));
}

TEST_CASE("the cgroup2 mount of a hybrid host is the unified subdirectory")
{
    CHECK(cgroup2_mount(fixture("mountinfo-hybrid")) == std::optional<std::string>("/sys/fs/cgroup/unified"));
}

TEST_CASE("a host with only v1 hierarchies has no cgroup2 mount")
{
    CHECK_FALSE(cgroup2_mount(fixture("mountinfo-none")).has_value());
    CHECK_FALSE(cgroup2_mount("").has_value());
}

TEST_CASE("mount points with escaped spaces are unescaped")
{
    CHECK(cgroup2_mount("41 31 0:38 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n") ==
          std::optional<std::string>("/mnt/my cg"));
}

TEST_CASE("optional mountinfo fields before the separator are skipped")
{
    CHECK(cgroup2_mount("26 22 0:23 / /cg rw shared:9 master:2 - cgroup2 none rw\n") ==
          std::optional<std::string>("/cg"));
    // a "cgroup" (v1) fstype is not cgroup2
    CHECK_FALSE(cgroup2_mount("26 22 0:23 / /cg rw - cgroup cgroup2 rw\n").has_value());
}

TEST_CASE("the 0:: line of /proc/self/cgroup is found after v1 lines")
{
    CHECK(unified_cgroup(fixture("cgroup-hybrid")) == std::optional<std::string>("/system.slice/run-u7.service"));
    CHECK(unified_cgroup("0::/\n") == std::optional<std::string>("/"));
}

TEST_CASE("a cgroup outside the namespace, a removed one, or none at all is not usable")
{
    CHECK_FALSE(unified_cgroup("0::/../../user.slice\n").has_value());
    CHECK_FALSE(unified_cgroup("0::/a/b (deleted)\n").has_value());
    CHECK_FALSE(unified_cgroup("1:cpu:/\n").has_value());
    CHECK_FALSE(unified_cgroup("").has_value());
}

TEST_CASE("cgroup paths become relative and reject dot components")
{
    CHECK(relative_cgroup_path("/") == std::optional<std::string>(""));
    CHECK(relative_cgroup_path("/a/b/") == std::optional<std::string>("a/b"));
    CHECK(relative_cgroup_path("a//b") == std::optional<std::string>("a/b"));
    CHECK_FALSE(relative_cgroup_path("/a/../b").has_value());
    CHECK_FALSE(relative_cgroup_path("/a/./b").has_value());
}

TEST_CASE("cgroup names may not contain slashes, dots only, or the cgroup. prefix")
{
    CHECK(valid_cgroup_name("cgrun-1-2"));
    CHECK_FALSE(valid_cgroup_name(""));
    CHECK_FALSE(valid_cgroup_name("."));
    CHECK_FALSE(valid_cgroup_name(".."));
    CHECK_FALSE(valid_cgroup_name("a/b"));
    CHECK_FALSE(valid_cgroup_name("cgroup.procs"));
    CHECK_FALSE(valid_cgroup_name(std::string(300, 'a')));
}
