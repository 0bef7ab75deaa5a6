#pragma once

// One cgroup v2 directory that a child's tree lives in, touched only through dirfds.

#include <cgrun/error.hpp>
#include <cgrun/unique_fd.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cgrun::detail {

struct cpu_times {
    double user_ms = 0;
    double system_ms = 0;
};

enum class kill_mechanism { cgroup_kill, freeze_kill };

// Test switch: pretend cgroup.kill does not exist (kernel < 5.14), so the freeze-kill path
// runs. Set by the environment variable CGRUN_TEST_NO_CGROUP_KILL=1.
bool cgroup_kill_disabled() noexcept;

// The pids of a cgroup.procs text; the words of a cgroup.controllers/subtree_control text.
std::vector<int> parse_pids(const std::string& text);
std::vector<std::string> split_words(const std::string& text);

// The directory of the cgroup at `path` ("/a/b"; "/" or "" is the root) below the mount.
result<unique_fd> open_cgroup(int mount_fd, const std::string& path);
// The names listed in cgroup.controllers of the cgroup directory `dirfd` (at `path`).
result<std::vector<std::string>> controllers(int dirfd, const std::string& path);
// Writes "+controller" to cgroup.subtree_control of the cgroup directory `dirfd` (at `path`).
result<void> enable_controller(int dirfd, const std::string& path, const std::string& controller);

class cgroup_dir {
public:
    cgroup_dir() = default;
    // Opens the cgroup at `path` (inside the hierarchy, "/a/b") below the mount's dirfd.
    static result<cgroup_dir> open(int mount_fd, const std::string& path);
    // Creates `name` below `parent` (path inside the hierarchy) and opens it.
    static result<cgroup_dir> create(int mount_fd, const std::string& parent, const std::string& name);
    // The same below the parent's directory fd `parent_fd` (at `parent`).
    static result<cgroup_dir> create_in(int parent_fd, const std::string& parent, const std::string& name);

    [[nodiscard]] int fd() const noexcept { return dir_.get(); }
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    [[nodiscard]] bool valid() const noexcept { return dir_.valid(); }

    // Live processes in this cgroup or below (cgroup.events "populated"). Once it has read
    // false it stays false without another read.
    result<bool> populated();
    // populated() has read false.
    [[nodiscard]] bool known_empty() const noexcept { return emptied_; }
    // SIGKILLs the whole subtree: cgroup.kill, or freeze + kill each pid + thaw where
    // cgroup.kill is missing. Returns the mechanism used.
    result<kill_mechanism> kill_all();
    // Sends `sig` (then SIGCONT) to every process in the subtree, one by one.
    result<void> signal_all(int sig);
    // Waits until nothing in the subtree lives, at most until `deadline`. false on timeout.
    result<bool> wait_empty(std::chrono::steady_clock::time_point deadline);
    // Pids in the subtree right now.
    std::vector<int> pids();

    cpu_times cpu();
    // usage_usec of cpu.stat; nullopt if it cannot be read.
    std::optional<std::chrono::microseconds> cpu_usage();
    std::optional<std::uint64_t> memory_peak();
    bool oom_killed();
    bool has_file(const std::string& name) const noexcept;
    // memory.events opened for poll(POLLPRI): it changes on every OOM kill. Invalid without
    // the memory controller.
    unique_fd open_memory_events();
    result<void> write(const std::string& file, const std::string& value);

    // Removes the directory and any sub-cgroups the payload made, bottom-up, retrying
    // EBUSY while dying tasks detach. The cgroup must be empty.
    result<void> remove(int mount_fd);
    // Forgets the directory without removing it.
    void release() noexcept { dir_.reset(); events_.reset(); }

private:
    cgroup_dir(unique_fd dir, std::string path) : dir_(std::move(dir)), path_(std::move(path)) {}
    result<kill_mechanism> freeze_kill();
    result<bool> read_populated();
    std::string where(const std::string& file) const;

    unique_fd dir_;
    unique_fd events_; // cgroup.events, kept open for poll(POLLPRI)
    std::string path_;
    std::optional<bool> memory_files_; // memory.peak exists; unknown until first read
    bool emptied_ = false;             // populated() read false
};

} // namespace cgrun::detail
