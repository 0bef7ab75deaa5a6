// spawn()'s fallback over the methods, through the seam of lib/tree.hpp: placement
// functions and a tree are test doubles here (no systemd, no cgroup, no process).

#include "tree.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace cgrun;
using namespace cgrun::detail;

namespace {

class fake_tree final : public tree {
public:
    result<bool> alive() override { return false; }
    void signal(int) override {}
    result<std::string> kill() override { return mechanism(); }
    [[nodiscard]] std::string mechanism() const override { return "fake"; }
    result<bool> wait_empty(deadline_t) override { return true; }
    int remaining() override { return 0; }
    std::vector<pid_t> members() override { return {}; }
    void sample(usage&) override {}
    [[nodiscard]] guard_target guard() const override { return {}; }
};

std::vector<std::string> calls;
// What each fake method answers: an error code, or 0 for success.
errc scope_says{}, cgroup_says{}, pgroup_says{};
bool scope_ok = false, cgroup_ok = false, pgroup_ok = false;

result<placed> answer(const char* name, bool ok, errc e)
{
    calls.emplace_back(name);
    if (!ok)
        return error::make(e, std::string(name) + " refused");
    placed p;
    p.held = std::make_unique<fake_tree>();
    return p;
}

result<placed> fake_scope(const place_request&) { return answer("scope", scope_ok, scope_says); }
result<placed> fake_cgroup(const place_request&) { return answer("cgroup", cgroup_ok, cgroup_says); }
result<placed> fake_pgroup(const place_request&) { return answer("pgroup", pgroup_ok, pgroup_says); }

const method_entry table[] = {
    {method::scope, fake_scope},
    {method::cgroup, fake_cgroup},
    {method::pgroup, fake_pgroup},
};

struct fixture {
    options opts;
    std::vector<limit_setting> limits;
    main_process main;
    placement where;
    fixture()
    {
        calls.clear();
        scope_ok = cgroup_ok = pgroup_ok = false;
        scope_says = errc::systemd_unavailable;
        cgroup_says = errc::cgroup_not_delegated;
        pgroup_says = errc::spawn_failed;
    }
    result<placed> run(method m) { return place(table, m, {opts, limits, &main}, where); }
};

} // namespace

TEST_CASE_FIXTURE(fixture, "auto tries scope, then cgroup, then pgroup, recording each reason")
{
    pgroup_ok = true;
    auto p = run(method::automatic);
    REQUIRE(p.has_value());
    CHECK(calls == std::vector<std::string>{"scope", "cgroup", "pgroup"});
    CHECK(where.used == method::pgroup);
    REQUIRE(where.fallbacks.size() == 2);
    CHECK(where.fallbacks[0].tried == method::scope);
    CHECK(where.fallbacks[0].reason.find("scope refused") != std::string::npos);
    CHECK(where.fallbacks[1].tried == method::cgroup);
    CHECK(where.fallbacks[1].reason.find("cgroup refused") != std::string::npos);
    CHECK(p->held != nullptr);
}

TEST_CASE_FIXTURE(fixture, "auto stops at the first method that works")
{
    scope_ok = cgroup_ok = pgroup_ok = true;
    REQUIRE(run(method::automatic).has_value());
    CHECK(calls == std::vector<std::string>{"scope"});
    CHECK(where.used == method::scope);
    CHECK(where.fallbacks.empty());

    fixture second;
    cgroup_ok = pgroup_ok = true;
    REQUIRE(second.run(method::automatic).has_value());
    CHECK(calls == std::vector<std::string>{"scope", "cgroup"});
    CHECK(second.where.used == method::cgroup);
    CHECK(second.where.fallbacks.size() == 1);
}

TEST_CASE_FIXTURE(fixture, "an explicit method never falls back")
{
    cgroup_ok = pgroup_ok = true;
    auto p = run(method::scope);
    REQUIRE_FALSE(p.has_value());
    CHECK(p.error().code == errc::systemd_unavailable);
    CHECK(calls == std::vector<std::string>{"scope"});
    CHECK(where.fallbacks.empty());

    calls.clear();
    scope_ok = true;
    auto c = run(method::cgroup);
    REQUIRE(c.has_value());
    CHECK(calls == std::vector<std::string>{"cgroup"});
    CHECK(where.used == method::cgroup);
}

TEST_CASE_FIXTURE(fixture, "auto does not fall back on a fatal error")
{
    cgroup_ok = pgroup_ok = true;
    for (auto e : {errc::exec_not_found, errc::exec_not_executable, errc::exec_failed, errc::invalid_argument,
                   errc::controller_unavailable}) {
        calls.clear();
        where = {};
        scope_says = e;
        auto p = run(method::automatic);
        REQUIRE_FALSE(p.has_value());
        CHECK(p.error().code == e);
        CHECK(calls == std::vector<std::string>{"scope"});
        CHECK(where.fallbacks.empty());
    }
}

TEST_CASE_FIXTURE(fixture, "auto with nothing that works says so")
{
    auto p = run(method::automatic);
    REQUIRE_FALSE(p.has_value());
    CHECK(p.error().code == errc::spawn_failed);
    CHECK(calls.size() == 3);
    CHECK(where.fallbacks.size() == 3);
}

TEST_CASE("the default table is auto's documented order")
{
    REQUIRE(std::size(default_methods) == 4);
    CHECK(default_methods[0].m == method::scope);
    CHECK(default_methods[1].m == method::cgroup);
    CHECK(default_methods[2].m == method::subreaper);
    CHECK(default_methods[3].m == method::pgroup);
}

TEST_CASE("inside a delegated cgroup auto tries cgroup first, then the usual order")
{
    REQUIRE(std::size(delegated_methods) == 4);
    CHECK(delegated_methods[0].m == method::cgroup);
    CHECK(delegated_methods[1].m == method::scope);
    CHECK(delegated_methods[2].m == method::subreaper);
    CHECK(delegated_methods[3].m == method::pgroup);
}

TEST_CASE("an explicit method or a given cgroup parent never reorders")
{
    options o;
    placement where;
    o.method = method::scope;
    CHECK(methods_for(o, where).data() == default_methods);
    o.method = method::automatic;
    o.cgroup.parent = "/anything";
    CHECK(methods_for(o, where).data() == default_methods);
    CHECK_FALSE(where.reason.has_value());
}

TEST_CASE("auto with the delegated scope asked for tries cgroup first, and says why")
{
    options o;
    placement where;
    o.cgroup.delegated_scope = true;
    CHECK(methods_for(o, where).data() == delegated_methods);
    REQUIRE(where.reason.has_value());
    CHECK(where.reason->find("delegated_scope") != std::string::npos);
}
