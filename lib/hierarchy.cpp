// The cgroup2 hierarchy as this process sees it: its mount, and the cgroup of a process.

#include "hierarchy.hpp"

#include "cgroup_path.hpp"
#include "sys.hpp"

#include <fcntl.h>
#include <sys/statfs.h>

#include <linux/magic.h>

namespace cgrun::detail {

result<cgroup2_root> cgroup2()
{
    static const result<cgroup2_root> root = []() -> result<cgroup2_root> {
        // Where systemd and container runtimes mount it (unified, and hybrid like ours):
        // an fstatfs is cheaper than making the kernel print /proc/self/mountinfo (a tenth of
        // the cgrun tool's own run time of `true` went there).
        for (const char* known : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
            auto fd = sys::open_dir(AT_FDCWD, known);
            struct statfs st{};
            if (fd && ::fstatfs(fd->get(), &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC)
                return cgroup2_root{known, fd->release()};
        }
        auto info = sys::read_file(AT_FDCWD, "/proc/self/mountinfo");
        if (!info)
            return error::make(errc::cgroup2_unavailable, info.error().message());
        auto mount = cgroup2_mount(*info);
        if (!mount)
            return error::make(errc::cgroup2_unavailable, "no cgroup2 mount in /proc/self/mountinfo");
        auto fd = sys::open_dir(AT_FDCWD, *mount);
        if (!fd)
            return error::make(errc::cgroup2_unavailable, fd.error().message());
        struct statfs st{};
        if (::fstatfs(fd->get(), &st) < 0 || st.f_type != CGROUP2_SUPER_MAGIC)
            return error::make(errc::cgroup2_unavailable, *mount + " is not a cgroup2 filesystem");
        // Kept open (CLOEXEC) for the life of the process: every cgroup is reached from it.
        return cgroup2_root{*mount, fd->release()};
    }();
    return root;
}

namespace {
result<std::string> cgroup_in(const std::string& file)
{
    auto text = sys::read_record(AT_FDCWD, file); // /proc/PID/cgroup: one record
    if (!text)
        return error::make(errc::cgroup2_unavailable, text.error().message());
    auto path = unified_cgroup(*text);
    if (!path)
        return error::make(errc::cgroup2_unavailable, "no reachable 0:: line in " + file);
    return *path;
}
} // namespace

result<std::string> process_cgroup(pid_t pid)
{
    return cgroup_in("/proc/" + std::to_string(pid) + "/cgroup");
}

result<std::string> own_cgroup()
{
    return cgroup_in("/proc/self/cgroup");
}

} // namespace cgrun::detail
