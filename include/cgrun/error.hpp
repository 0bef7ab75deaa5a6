#pragma once

#include <cgrun/export.hpp>

#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace cgrun {

// Domain errors of libcgrun. System errors use std::system_category().
enum class errc {
    invalid_argument = 1,   // a caller-supplied option is malformed
    cgroup2_unavailable,    // no cgroup2 mount, or the own cgroup is not on it
    cgroup_not_delegated,   // no writable parent cgroup for the cgroup method
    systemd_unavailable,    // no reachable systemd manager on the chosen bus
    scope_failed,           // StartTransientUnit or its job failed
    controller_unavailable, // a resource limit needs a controller that is not available
    exec_not_found,         // the command does not exist
    exec_not_executable,    // the command exists but cannot be executed
    exec_failed,            // any other failure between fork and exec
    spawn_failed,           // fork/clone3 or its preparation failed
    still_populated,        // the tree could not be emptied in time
};

CGRUN_EXPORT const std::error_category& category() noexcept;

inline std::error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), category()};
}

// An error plus what it touched, e.g. {EACCES, "write /sys/fs/cgroup/x/cgroup.kill"}.
struct CGRUN_EXPORT error {
    std::error_code code;
    std::string context;

    // "<context>: <code message>", or only one of them when the other is empty.
    [[nodiscard]] std::string message() const;

    static error from_errno(int err, std::string context);
    static error make(errc e, std::string context);
};

// A small subset of std::expected<T, error> (C++23), usable with clang 14 + libstdc++ 12.
template <typename T>
class [[nodiscard]] result {
public:
    result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    result(cgrun::error err) : v_(std::in_place_index<1>, std::move(err)) {}

    [[nodiscard]] bool has_value() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    // Named like std::expected::error().
    const cgrun::error& error() const& { return std::get<1>(v_); }

private:
    std::variant<T, cgrun::error> v_;
};

// result<void>: success or an error.
template <>
class [[nodiscard]] result<void> {
public:
    result() = default;
    result(cgrun::error err) : err_(std::move(err)), ok_(false) {}

    [[nodiscard]] bool has_value() const noexcept { return ok_; }
    explicit operator bool() const noexcept { return ok_; }
    const cgrun::error& error() const& { return err_; }

private:
    cgrun::error err_;
    bool ok_ = true;
};

} // namespace cgrun

template <>
struct std::is_error_code_enum<cgrun::errc> : std::true_type {};
