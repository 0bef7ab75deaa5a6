#pragma once

#include "command_line.hpp"
#include "output.hpp"

namespace cgrun::tool {

// `cgrun --check`: prints what the host offers, then runs a tree with a setsid escapee
// under each escape-proof method that may work and checks that the escapee died.
// 0 when at least one method proved itself, 1 when none did, 125 on internal errors.
[[nodiscard]] int run_check(const command_line& cmd, json_file& json);

// `cgrun --setup-cgroup`: the setup step for limits (setup_cgroup()) on the own cgroup, or
// on --cgroup-parent. 0 when done (also when there was nothing to do), 125 otherwise.
[[nodiscard]] int run_setup(const command_line& cmd, json_file& json);

} // namespace cgrun::tool
