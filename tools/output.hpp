#pragma once

#include <cgrun/error.hpp>
#include <cgrun/unique_fd.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace cgrun::tool {

// One line "cgrun: <text>" on stderr.
void warn(std::string_view text);

// Where --json goes: a file opened (and truncated) before anything starts, or stdout.
class json_file {
public:
    json_file() = default;

    // "-" = stdout.
    static result<json_file> open(const std::string& path);
    // open(*path) when --json was given, else a disabled json_file.
    static result<json_file> open_optional(const std::optional<std::string>& path);

    [[nodiscard]] bool enabled() const noexcept { return fd_ >= 0; }
    // Writes `json` plus a newline; does nothing when not enabled.
    result<void> write(std::string_view json);

private:
    json_file(unique_fd owned, int fd, std::string path) noexcept
        : owned_(std::move(owned)), fd_(fd), path_(std::move(path))
    {
    }

    unique_fd owned_;
    int fd_ = -1;
    std::string path_;
};

} // namespace cgrun::tool
