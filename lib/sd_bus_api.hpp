#pragma once

// libsystemd's sd-bus, loaded with dlopen() on first use. Only the scope method needs it;
// linking it would load libsystemd and its six dependencies (libgcrypt, liblzma, libzstd,
// liblz4, libcap, libgpg-error) into every process, costing ~1 MiB of RSS and ~0.6 ms
// of start-up for the cgroup and pgroup methods too.

#include <systemd/sd-bus.h>

namespace cgrun::detail {

struct sd_bus_api {
#define CGRUN_SD_BUS_FUNCTIONS(X)                                                                                     \
    X(sd_bus_call)                                                                                                     \
    X(sd_bus_call_method)                                                                                              \
    X(sd_bus_call_method_async)                                                                                        \
    X(sd_bus_error_free)                                                                                               \
    X(sd_bus_error_is_set)                                                                                             \
    X(sd_bus_flush)                                                                                                    \
    X(sd_bus_flush_close_unref)                                                                                        \
    X(sd_bus_get_property_string)                                                                                      \
    X(sd_bus_match_signal)                                                                                             \
    X(sd_bus_message_append)                                                                                           \
    X(sd_bus_message_close_container)                                                                                  \
    X(sd_bus_message_new_method_call)                                                                                  \
    X(sd_bus_message_open_container)                                                                                   \
    X(sd_bus_message_read)                                                                                             \
    X(sd_bus_message_unref)                                                                                            \
    X(sd_bus_open_system)                                                                                              \
    X(sd_bus_open_user)                                                                                                \
    X(sd_bus_path_encode)                                                                                              \
    X(sd_bus_process)                                                                                                  \
    X(sd_bus_set_method_call_timeout)                                                                                  \
    X(sd_bus_slot_unref)                                                                                               \
    X(sd_bus_wait)
#define CGRUN_SD_BUS_MEMBER(name) decltype(&::name) name = nullptr;
    CGRUN_SD_BUS_FUNCTIONS(CGRUN_SD_BUS_MEMBER)
#undef CGRUN_SD_BUS_MEMBER
};

// The loaded API, or nullptr (with *why set) when libsystemd.so.0 cannot be loaded.
const sd_bus_api* sd_bus_load(const char** why) noexcept;

} // namespace cgrun::detail
