#include "output.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace cgrun::tool {

namespace {

int write_all(int fd, std::string_view data)
{
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return 0;
}

} // namespace

void warn(std::string_view text)
{
    std::string line = "cgrun: ";
    line += text;
    line += '\n';
    (void)write_all(STDERR_FILENO, line);
}

result<json_file> json_file::open_optional(const std::optional<std::string>& path)
{
    if (!path)
        return json_file{};
    return open(*path);
}

result<json_file> json_file::open(const std::string& path)
{
    if (path == "-")
        return json_file(unique_fd(), STDOUT_FILENO, "stdout");
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return error::from_errno(errno, "open " + path);
    return json_file(unique_fd(fd), fd, path);
}

result<void> json_file::write(std::string_view json)
{
    if (!enabled())
        return {};
    std::string text(json);
    text += '\n';
    if (int err = write_all(fd_, text))
        return error::from_errno(err, "write " + path_);
    return {};
}

} // namespace cgrun::tool
