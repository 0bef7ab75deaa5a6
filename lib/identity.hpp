#pragma once

// Who and how nicely the command runs: options::run_as and options::nice, settled in the
// spawner before anything is started.

#include <cgrun/error.hpp>
#include <cgrun/options.hpp>

namespace cgrun::detail {

// Checks nice and run_as, and fills run_as's defaults (the uid's primary group and its
// supplementary groups, from the user database). A caller that is not root may only ask
// for what it already is: then run_as is cleared (nothing to change). Runs in the spawner:
// the child can do no lookups.
result<void> settle_identity(options& opts);

} // namespace cgrun::detail
