#pragma once

// Umbrella header: everything a caller of libcgrun needs.
#include <cgrun/child.hpp>
#include <cgrun/error.hpp>
#include <cgrun/host.hpp>
#include <cgrun/options.hpp>
#include <cgrun/report.hpp>
#include <cgrun/unique_fd.hpp>
#include <cgrun/version.hpp>
