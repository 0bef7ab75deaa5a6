// libsystemd loaded with dlopen() on first use of the scope method; the sd-bus calls we need.

#include "sd_bus_api.hpp"

#include <config.h>

#if CGRUN_HAVE_SYSTEMD

#include <dlfcn.h>

namespace cgrun::detail {

const sd_bus_api* sd_bus_load(const char** why) noexcept
{
    static const char* error = nullptr;
    static const sd_bus_api* api = []() -> const sd_bus_api* {
        // Never unloaded: sd-bus objects may live until the process exits.
        void* lib = ::dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            error = "cannot load libsystemd.so.0";
            return nullptr;
        }
        static sd_bus_api table;
#define CGRUN_SD_BUS_LOAD(name)                                                                                        \
    table.name = reinterpret_cast<decltype(table.name)>(::dlsym(lib, #name));                                         \
    if (!table.name) {                                                                                                 \
        error = "libsystemd.so.0 lacks " #name;                                                                        \
        return nullptr;                                                                                                \
    }
        CGRUN_SD_BUS_FUNCTIONS(CGRUN_SD_BUS_LOAD)
#undef CGRUN_SD_BUS_LOAD
        return &table;
    }();
    if (!api && why)
        *why = error;
    return api;
}

} // namespace cgrun::detail

#endif
