#pragma once

// fork/clone3 + exec. All code that runs in the child between fork and exec lives here.

#include <cgrun/error.hpp>
#include <cgrun/options.hpp>
#include <cgrun/unique_fd.hpp>

#include <sys/types.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

namespace cgrun::detail {

struct spawn_request {
    std::vector<std::string> argv;
    std::optional<std::vector<std::string>> env;
    std::string cwd;
    std::optional<int> nice;
    identity run_as; // settled (settle_identity): groups set whenever uid or gid is
    std::array<stdio_spec, 3> stdio{};
    std::vector<int> inherit_fds;
    int cgroup_fd = -1; // born into this cgroup (CLONE_INTO_CGROUP) when >= 0
    // The child stops before exec until release() (a scope must own it first).
    bool hold = false;
    // Start the command through an intermediate process (the subreaper method's reaper):
    // start_process forks that process instead of the command, and it runs
    // via(via_arg, start, plan), which must not return. It runs in a fork of a possibly
    // multi-threaded spawner, so it may only make raw system calls. start(plan) clones the
    // command from the prepared plan (as start_process would have) and returns its pid or
    // -errno; the command is then the intermediate's child. spawned::pid and spawned::pidfd
    // are the intermediate's; hold is not supported with it.
    using start_command_fn = pid_t (*)(const void* plan) noexcept;
    void (*via)(void* via_arg, start_command_fn start, const void* plan) noexcept = nullptr;
    void* via_arg = nullptr;
};

// The request for the command of `o` (argv, env, cwd, nice, identity, stdio, inherited fds).
spawn_request launch_request(const options& o);

// A child's pidfd while nobody else answers for the child: dropping it kills and reaps the
// child (a held one would otherwise exit by itself once `go` closes, and stay a zombie).
// release() hands the pidfd on to whoever takes over.
class reaping_pidfd {
public:
    reaping_pidfd() = default;
    explicit reaping_pidfd(unique_fd fd) noexcept : fd_(std::move(fd)) {}
    reaping_pidfd(reaping_pidfd&&) noexcept = default;
    reaping_pidfd& operator=(reaping_pidfd&& other) noexcept
    {
        if (this != &other) {
            reset();
            fd_ = std::move(other.fd_);
        }
        return *this;
    }
    ~reaping_pidfd() { reset(); }

    [[nodiscard]] int get() const noexcept { return fd_.get(); }
    explicit operator bool() const noexcept { return fd_.valid(); }
    [[nodiscard]] unique_fd release() noexcept { return std::move(fd_); }
    void reset() noexcept;

private:
    unique_fd fd_;
};

// What the child reads between clone and exec (see spawn.cpp).
struct launch;
struct launch_free {
    void operator()(launch* l) const noexcept;
};

struct spawned {
    pid_t pid = -1;
    std::string path; // the resolved executable
    // What the errors of release() name: the directory, the identity, the nice value.
    std::string cwd;
    identity run_as;
    std::optional<int> nice;
    reaping_pidfd pidfd;
    bool in_cgroup = false; // born in spawn_request::cgroup_fd
    unique_fd go;           // release() writes here (hold)
    unique_fd exec_status;  // EOF = exec succeeded; else {stage, errno}
    // Without exec_status (a vfork-style child on our memory, which had exec'd or died when
    // clone3 returned): the stage it failed at and its errno, {0, 0} when it exec'd.
    int failed_stage = 0;
    int failed_errno = 0;
    std::array<unique_fd, 3> parent_ends; // for stdio_spec::pipe
    // A held child that shares our memory reads this until it execs: kept until release()
    // has seen the exec (or, failing that, until the child is dead).
    std::unique_ptr<launch, launch_free> image;
};

// Test switch: CGRUN_TEST_NO_CLONE_INTO_CGROUP=1 makes CLONE_INTO_CGROUP look refused
// (as under seccomp), so the fork + cgroup.procs path runs.
bool clone_into_cgroup_disabled() noexcept;

// Resolves argv[0] against PATH (of env, or the caller's) like execvp; a name that exists
// nowhere is errc::exec_not_found.
result<std::string> resolve_executable(const std::string& name, const std::optional<std::vector<std::string>>& env);

// Forks the child. When cgroup_fd is given but the kernel refuses CLONE_INTO_CGROUP, the
// child is held and in_cgroup is false: the caller moves it (cgroup.procs) before release().
result<spawned> start_process(spawn_request req);

// A process that only waits until `release` is closed (or it is killed), then exits. Put
// into a scope next to the child, it keeps the scope's cgroup from being removed before
// its final memory.peak and memory.events could be read.
struct sentinel {
    pid_t pid = -1;
    unique_fd pidfd;
    unique_fd release;

    sentinel() = default;
    sentinel(pid_t p, unique_fd fd, unique_fd rel) noexcept
        : pid(p), pidfd(std::move(fd)), release(std::move(rel)) {}
    sentinel(sentinel&&) noexcept = default;
    sentinel& operator=(sentinel&&) = delete;
    ~sentinel();
};
result<sentinel> start_sentinel();
// Lets the sentinel exit and reaps it.
void stop_sentinel(sentinel& s) noexcept;

// Lets a held child go on to exec, then waits for the outcome of execve: an error
// (exec_not_found, exec_not_executable, exec_failed) if it failed. The child is not reaped.
result<void> release(spawned& s);

} // namespace cgrun::detail
