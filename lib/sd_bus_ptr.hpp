#pragma once

// Owners for sd-bus objects: every bus, message, slot and error is released by a destructor.

#include "sd_bus_api.hpp"

#include <systemd/sd-bus.h>

#include <memory>

namespace cgrun::detail {

// The loaded sd-bus API. Only valid after connect_manager() succeeded, which is the only
// way to obtain the objects these owners hold.
inline const sd_bus_api& sd()
{
    return *sd_bus_load(nullptr);
}

struct bus_unref {
    void operator()(sd_bus* b) const noexcept { sd().sd_bus_flush_close_unref(b); }
};
struct message_unref {
    void operator()(sd_bus_message* m) const noexcept { sd().sd_bus_message_unref(m); }
};
struct slot_unref {
    void operator()(sd_bus_slot* s) const noexcept { sd().sd_bus_slot_unref(s); }
};

using bus_ptr = std::unique_ptr<sd_bus, bus_unref>;
using message_ptr = std::unique_ptr<sd_bus_message, message_unref>;
using slot_ptr = std::unique_ptr<sd_bus_slot, slot_unref>;

class bus_error {
public:
    bus_error() = default;
    bus_error(const bus_error&) = delete;
    bus_error& operator=(const bus_error&) = delete;
    ~bus_error() { sd().sd_bus_error_free(&e_); }
    sd_bus_error* get() noexcept { return &e_; }
    [[nodiscard]] bool is_set() const noexcept { return sd().sd_bus_error_is_set(&e_); }
    [[nodiscard]] const char* name() const noexcept { return e_.name ? e_.name : ""; }
    [[nodiscard]] const char* message() const noexcept { return e_.message ? e_.message : ""; }

private:
    // SD_BUS_ERROR_NULL is a C compound literal, which C++ -Wpedantic rejects.
    sd_bus_error e_{nullptr, nullptr, 0};
};

} // namespace cgrun::detail
