// One cgroup v2 directory, touched through dirfds: populated, kill, signal, wait, accounting, removal.

#include "cgroup_fs.hpp"

#include "cgroup_path.hpp"
#include "sys.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>

namespace cgrun::detail {

using namespace std::chrono_literals;

bool cgroup_kill_disabled() noexcept
{
    static const bool disabled = [] {
        const char* v = std::getenv("CGRUN_TEST_NO_CGROUP_KILL");
        return v && std::strcmp(v, "1") == 0;
    }();
    return disabled;
}

namespace {

std::optional<std::string> key_value(const std::string& text, std::string_view key)
{
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string::npos)
            end = text.size();
        std::string_view line(text.data() + pos, end - pos);
        if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ')
            return std::string(line.substr(key.size() + 1));
        pos = end + 1;
    }
    return std::nullopt;
}

// Calls fn(dirfd, path) for this cgroup and every descendant, parents first.
void walk(int fd, const std::string& path, const std::function<void(int, const std::string&)>& fn)
{
    fn(fd, path);
    auto subs = sys::list_subdirs(fd, path);
    if (!subs)
        return;
    for (auto& name : *subs) {
        auto sub = sys::open_dir(fd, name);
        if (sub)
            walk(sub->get(), path + "/" + name, fn);
    }
}

} // namespace

result<unique_fd> open_cgroup(int mount_fd, const std::string& path)
{
    auto rel = relative_cgroup_path(path);
    if (!rel)
        return error::make(errc::invalid_argument, "cgroup path " + path);
    auto fd = sys::open_dir(mount_fd, rel->empty() ? "." : *rel);
    if (!fd)
        return error{fd.error().code, "open cgroup " + (path.empty() ? "/" : path)};
    return fd;
}

result<std::vector<std::string>> controllers(int dirfd, const std::string& path)
{
    auto text = sys::read_file(dirfd, "cgroup.controllers");
    if (!text)
        return error{text.error().code, "read " + path + "/cgroup.controllers"};
    return split_words(*text);
}

result<void> enable_controller(int dirfd, const std::string& path, const std::string& controller)
{
    // EBUSY while the cgroup itself holds processes: the kernel's "no internal processes" rule
    // (e.g. our own cgroup, or a container's root before its processes moved to a leaf).
    if (auto w = sys::write_file(dirfd, "cgroup.subtree_control", "+" + controller); !w)
        return error{w.error().code, "enable the " + controller + " controller in " + path +
                                         ": write cgroup.subtree_control"};
    return {};
}

std::vector<std::string> split_words(const std::string& text)
{
    std::vector<std::string> out;
    size_t i = 0;
    while ((i = text.find_first_not_of(" \n", i)) != std::string::npos) {
        size_t end = text.find_first_of(" \n", i);
        out.push_back(text.substr(i, end - i));
        i = end;
    }
    return out;
}

std::vector<int> parse_pids(const std::string& text)
{
    std::vector<int> out;
    const char* p = text.c_str();
    while (*p) {
        char* end = nullptr;
        long v = std::strtol(p, &end, 10);
        if (end == p)
            break;
        if (v > 0)
            out.push_back(static_cast<int>(v));
        p = end;
        while (*p == '\n')
            ++p;
    }
    return out;
}

std::string cgroup_dir::where(const std::string& file) const
{
    return path_ + "/" + file;
}

result<cgroup_dir> cgroup_dir::open(int mount_fd, const std::string& path)
{
    auto fd = open_cgroup(mount_fd, path);
    if (!fd)
        return fd.error();
    return cgroup_dir{std::move(*fd), "/" + *relative_cgroup_path(path)};
}

result<cgroup_dir> cgroup_dir::create(int mount_fd, const std::string& parent, const std::string& name)
{
    if (!valid_cgroup_name(name))
        return error::make(errc::invalid_argument, "cgroup name " + name);
    auto pfd = open_cgroup(mount_fd, parent);
    if (!pfd)
        return pfd.error();
    return create_in(pfd->get(), parent, name);
}

result<cgroup_dir> cgroup_dir::create_in(int parent_fd, const std::string& parent, const std::string& name)
{
    if (!valid_cgroup_name(name))
        return error::make(errc::invalid_argument, "cgroup name " + name);
    auto prel = relative_cgroup_path(parent);
    if (!prel)
        return error::make(errc::invalid_argument, "cgroup path " + parent);
    std::string path = (prel->empty() ? "" : "/" + *prel) + "/" + name;
    if (auto r = sys::make_dir(parent_fd, name, 0755); !r)
        return error{r.error().code, "mkdir " + path};
    auto fd = sys::open_dir(parent_fd, name);
    if (!fd) {
        (void)sys::remove_dir(parent_fd, name);
        return error{fd.error().code, "open cgroup " + path};
    }
    return cgroup_dir{std::move(*fd), path};
}

result<bool> cgroup_dir::populated()
{
    // Nothing in it can fork once it is empty: it stays empty (unless someone writes a pid
    // into its cgroup.procs, which is not ours to follow).
    if (emptied_)
        return false;
    auto pop = read_populated();
    if (pop && !*pop)
        emptied_ = true;
    return pop;
}

result<bool> cgroup_dir::read_populated()
{
    if (!events_) {
        auto fd = sys::open_file(dir_.get(), "cgroup.events", O_RDONLY);
        if (!fd) {
            // The directory is gone (systemd removes an emptied scope's cgroup on its own, and
            // may be faster than our first look): a removed cgroup holds no process.
            if (fd.error().code == std::errc::no_such_file_or_directory ||
                fd.error().code == std::errc::no_such_device)
                return false;
            return error{fd.error().code, "open " + where("cgroup.events")};
        }
        events_ = std::move(*fd);
    }
    auto text = sys::pread_all(events_.get(), where("cgroup.events"), true);
    if (!text) {
        // ENODEV: the cgroup was removed (systemd collects an empty scope at once).
        if (text.error().code == std::errc::no_such_device)
            return false;
        return text.error();
    }
    auto v = key_value(*text, "populated");
    return v && *v == "1";
}

result<bool> cgroup_dir::wait_empty(std::chrono::steady_clock::time_point deadline)
{
    // cgroup.events notifications are rate-limited (about 100/s per file) and coalesce, so
    // they are only hints: re-read on a short, growing interval as well.
    auto step = 50us;
    for (;;) {
        auto pop = populated();
        if (!pop)
            return pop.error();
        if (!*pop)
            return true;
        auto now = sys::now();
        if (now >= deadline)
            return false;
        auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - now);
        auto r = sys::poll_one(events_.get(), POLLPRI, std::min(left, std::chrono::microseconds(step)));
        if (!r)
            return r.error();
        step = std::min<std::chrono::microseconds>(step * 2, 5ms);
    }
}

std::vector<int> cgroup_dir::pids()
{
    std::vector<int> out;
    walk(dir_.get(), path_, [&](int fd, const std::string&) {
        auto text = sys::read_file(fd, "cgroup.procs");
        if (!text)
            return;
        auto p = parse_pids(*text);
        out.insert(out.end(), p.begin(), p.end());
    });
    return out;
}

result<void> cgroup_dir::signal_all(int sig)
{
    // cgroup.procs may list a pid twice or one that just exited; ESRCH is fine.
    for (int pid : pids()) {
        (void)sys::kill_pid(pid, sig);
        if (sig != SIGKILL && sig != SIGCONT)
            (void)sys::kill_pid(pid, SIGCONT); // a stopped task only acts on it once continued
    }
    return {};
}

result<kill_mechanism> cgroup_dir::kill_all()
{
    if (!cgroup_kill_disabled()) {
        auto r = sys::write_file(dir_.get(), "cgroup.kill", "1");
        if (r)
            return kill_mechanism::cgroup_kill;
        // The cgroup may have emptied and been removed since the caller looked: nothing to kill.
        if (auto pop = populated(); pop && !*pop)
            return kill_mechanism::cgroup_kill;
        // ENOENT: kernel < 5.14. Anything else is a real failure of ours.
        if (r.error().code != std::errc::no_such_file_or_directory)
            return error{r.error().code, "write " + where("cgroup.kill")};
    }
    return freeze_kill();
}

result<kill_mechanism> cgroup_dir::freeze_kill()
{
    // Without cgroup.kill: freeze so nothing can fork while we walk cgroup.procs, SIGKILL
    // each pid (fatal signals reach frozen tasks), then always thaw so the dying tasks can
    // exit. Repeat until empty: a task forked before the freeze took effect may remain.
    bool can_freeze = has_file("cgroup.freeze");
    for (int round = 0; round < 100; ++round) {
        if (can_freeze) {
            if (auto r = sys::write_file(dir_.get(), "cgroup.freeze", "1"); !r)
                return error{r.error().code, "write " + where("cgroup.freeze")};
            // Freezing completes asynchronously; wait briefly for "frozen 1".
            auto until = sys::now() + 50ms;
            while (sys::now() < until) {
                auto t = sys::read_record(dir_.get(), "cgroup.events");
                if (!t || key_value(*t, "frozen") == std::optional<std::string>("1"))
                    break;
                sys::sleep_for(100us);
            }
        }
        for (int pid : pids())
            (void)sys::kill_pid(pid, SIGKILL);
        if (can_freeze)
            (void)sys::write_file(dir_.get(), "cgroup.freeze", "0");
        auto empty = wait_empty(sys::now() + 20ms);
        if (!empty)
            return empty.error();
        if (*empty)
            break;
    }
    return kill_mechanism::freeze_kill;
}

cpu_times cgroup_dir::cpu()
{
    cpu_times t;
    auto text = sys::read_record(dir_.get(), "cpu.stat");
    if (!text)
        return t;
    if (auto u = key_value(*text, "user_usec"))
        t.user_ms = std::strtod(u->c_str(), nullptr) / 1000.0;
    if (auto s = key_value(*text, "system_usec"))
        t.system_ms = std::strtod(s->c_str(), nullptr) / 1000.0;
    return t;
}

std::optional<std::chrono::microseconds> cgroup_dir::cpu_usage()
{
    auto text = sys::read_record(dir_.get(), "cpu.stat");
    if (!text)
        return std::nullopt;
    auto u = key_value(*text, "usage_usec");
    if (!u)
        return std::nullopt;
    return std::chrono::microseconds(std::strtoll(u->c_str(), nullptr, 10));
}

std::optional<std::uint64_t> cgroup_dir::memory_peak()
{
    if (memory_files_ == false)
        return std::nullopt;
    auto text = sys::read_record(dir_.get(), "memory.peak");
    if (!text) {
        // No memory controller here: do not look again for this cgroup.
        if (text.error().code == std::errc::no_such_file_or_directory)
            memory_files_ = false;
        return std::nullopt;
    }
    memory_files_ = true;
    return std::strtoull(text->c_str(), nullptr, 10);
}

bool cgroup_dir::oom_killed()
{
    if (memory_files_ == false)
        return false;
    auto text = sys::read_record(dir_.get(), "memory.events");
    if (!text)
        return false;
    auto v = key_value(*text, "oom_kill");
    return v && std::strtoull(v->c_str(), nullptr, 10) > 0;
}

unique_fd cgroup_dir::open_memory_events()
{
    auto fd = sys::open_file(dir_.get(), "memory.events", O_RDONLY);
    if (!fd && fd.error().code == std::errc::no_such_file_or_directory)
        memory_files_ = false; // no memory controller here: memory.peak is not there either
    return fd ? std::move(*fd) : unique_fd{};
}

bool cgroup_dir::has_file(const std::string& name) const noexcept
{
    return sys::exists_at(dir_.get(), name);
}

result<void> cgroup_dir::write(const std::string& file, const std::string& value)
{
    if (auto r = sys::write_file(dir_.get(), file, value); !r)
        return error{r.error().code, "write " + value + " to " + where(file)};
    return {};
}

namespace {
// rmdir of `rel` (relative to the mount), removing sub-cgroups the payload made first.
result<void> remove_tree(int mount_fd, int fd, const std::string& rel, const std::string& path)
{
    // rmdir of a just-emptied cgroup can fail with EBUSY for a few ms while exiting tasks
    // are still being detached from it; EBUSY is also what a cgroup with children gives.
    auto until = sys::now() + 2s;
    bool children_removed = false;
    for (auto step = 100us;; step = std::min<std::chrono::microseconds>(step * 2, 10ms)) {
        int e = -sys::remove_dir(mount_fd, rel);
        if (e == 0 || e == ENOENT)
            return {};
        if (e != EBUSY || sys::now() >= until)
            return error::from_errno(e, "rmdir " + path);
        if (!children_removed) {
            children_removed = true;
            if (auto subs = sys::list_subdirs(fd, path)) {
                for (auto& sub : *subs) {
                    auto sfd = sys::open_dir(fd, sub);
                    if (!sfd)
                        continue;
                    if (auto r = remove_tree(mount_fd, sfd->get(), rel + "/" + sub, path + "/" + sub); !r)
                        return r;
                }
                if (!subs->empty())
                    continue; // retry at once
            }
        }
        sys::sleep_for(step);
    }
}
} // namespace

result<void> cgroup_dir::remove(int mount_fd)
{
    auto rel = relative_cgroup_path(path_);
    if (!rel || rel->empty())
        return error::make(errc::invalid_argument, "remove cgroup " + path_);
    events_.reset();
    auto r = remove_tree(mount_fd, dir_.get(), *rel, path_);
    if (r)
        dir_.reset();
    return r;
}

} // namespace cgrun::detail
