// auto's order of the methods, and placing a child with the first one that works.

#include "delegation.hpp"
#include "tree.hpp"

namespace cgrun::detail {

const method_entry default_methods[4] = {
    {method::scope, place_in_scope},
    {method::cgroup, place_in_cgroup},
    {method::subreaper, place_in_subreaper},
    {method::pgroup, place_in_pgroup},
};

// Inside a cgroup systemd delegated to the caller (Delegate=yes) a leaf of it is the
// cheapest place, and a scope per child would add a unit per child, each a D-Bus round trip,
// to a subtree that is ours already.
const method_entry delegated_methods[4] = {
    {method::cgroup, place_in_cgroup},
    {method::scope, place_in_scope},
    {method::subreaper, place_in_subreaper},
    {method::pgroup, place_in_pgroup},
};

std::span<const method_entry> methods_for(const options& o, placement& where)
{
    if (o.method != method::automatic)
        return default_methods;
    if (o.cgroup.delegated_scope) {
        where.reason = "a delegated scope per spawner was asked for (cgroup.delegated_scope)";
        return delegated_methods;
    }
    // Only the caller's own cgroup: a parent given by name is not known to be ours.
    if (!o.cgroup.parent.empty())
        return default_methods;
    auto d = delegated_default_parent();
    if (!d)
        return default_methods;
    where.reason = describe(*d);
    // The report names the unit that owns the subtree, as it names a scope.
    if (auto unit = d->root.substr(d->root.rfind('/') + 1); is_unit_name(unit))
        where.unit = unit;
    return delegated_methods;
}

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
            if (entry.m == method::cgroup && !p->unit)
                p->unit = where.unit; // a leaf of a delegated unit: that unit
            return p;
        }
        if (wanted != method::automatic || is_fatal(p.error()))
            return p.error();
        where.fallbacks.push_back({entry.m, p.error().message()});
    }
    return error::make(errc::spawn_failed, "no containment method worked");
}

} // namespace cgrun::detail
