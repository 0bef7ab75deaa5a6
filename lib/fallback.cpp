// auto's order of the methods, and placing a child with the first one that works.

#include "tree.hpp"

namespace cgrun::detail {

const method_entry default_methods[4] = {
    {method::scope, place_in_scope},
    {method::cgroup, place_in_cgroup},
    {method::subreaper, place_in_subreaper},
    {method::pgroup, place_in_pgroup},
};

bool is_fatal(const error& e)
{
    auto c = e.code;
    return c == errc::exec_not_found || c == errc::exec_not_executable || c == errc::exec_failed ||
           c == errc::invalid_argument || c == errc::controller_unavailable;
}

result<placed> place(std::span<const method_entry> table, method wanted, const place_request& r, placement& where)
{
    for (auto& entry : table) {
        if (wanted != method::automatic && entry.m != wanted)
            continue;
        auto p = entry.place(r);
        if (p) {
            where.used = entry.m;
            return p;
        }
        if (wanted != method::automatic || is_fatal(p.error()))
            return p.error();
        where.fallbacks.push_back({entry.m, p.error().message()});
    }
    return error::make(errc::spawn_failed, "no containment method worked");
}

} // namespace cgrun::detail
