#pragma once

// The setup step (setup.cpp) as the rest of the library sees it.

#include <cgrun/host.hpp>

#include <optional>
#include <string>

namespace cgrun::detail {

// The cgroup the cgroup method puts its leaves in by default: the caller's own, or, when
// the caller lives in the leaf of a setup step (xattr user.cgrun.setup), that leaf's parent.
// Looked up once per process (again after a fork): forget_default_parent() makes the next
// call look again.
result<std::string> default_parent();
void forget_default_parent();

// Whether limits in `parent` need the setup step (it holds processes and offers controllers
// it has not enabled for children), and what the step would do.
std::optional<host_info::setup_step> setup_needed(const std::string& parent, const std::string& leaf);

} // namespace cgrun::detail
