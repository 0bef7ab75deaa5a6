#pragma once

// libcgrun is built with hidden symbols; only what is marked here is exported.
#define CGRUN_EXPORT __attribute__((visibility("default")))
