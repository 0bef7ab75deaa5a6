#pragma once

// The system calls of the parent side. (The other files that make raw calls run in forked
// children and must stay next to them: spawn.cpp, the code between clone and exec and the
// clone/fork fallbacks around it; method_subreaper.cpp, the reaper; guard.cpp, the guard.)
// Everything opens O_CLOEXEC and retries EINTR.
//
// One errno convention: a call that can say what it touched returns result<T>, whose error
// carries the errno and names the call and the path; the few that return `int` or `pid_t`
// return 0 (or the pid) on success and -errno on failure, never touching errno.

#include <cgrun/error.hpp>
#include <cgrun/unique_fd.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cgrun::sys {

result<unique_fd> open_dir(int at, const std::string& path);
result<unique_fd> open_file(int at, const std::string& path, int flags);
// Reads a whole (small, pseudo-)file at `at`/`path`.
result<std::string> read_file(int at, const std::string& path);
// Reads from offset 0 of an already open fd (cgroup.events must be re-read from 0).
// `one_record`: a file the kernel shows as one seq_file record (see read_record()).
result<std::string> pread_all(int fd, const std::string& what, bool one_record = false);
// read_file() for a pseudo-file shown as one record (cpu.stat, cgroup.events, memory.peak,
// /proc/PID/stat): one read instead of two. Never for cgroup.procs and other lists.
result<std::string> read_record(int at, const std::string& path);
// One write of `data` to `at`/`path` (cgroupfs takes each write as one command).
result<void> write_file(int at, const std::string& path, std::string_view data);
result<void> make_dir(int at, const std::string& path, mode_t mode);
// fsetxattr / fgetxattr on an open file or directory.
result<void> set_xattr(int fd, const std::string& name, std::string_view value);
bool has_xattr(int fd, const std::string& name) noexcept;
// The caller runs as root (euid 0) or owns the open file `fd`.
bool root_or_owner(int fd) noexcept;
// The value of a small xattr (at most 64 bytes; a longer one is an error, ERANGE).
result<std::string> get_xattr(int fd, const std::string& name);
// rmdir: 0 or -errno (callers retry -EBUSY).
int remove_dir(int at, const std::string& path) noexcept;

struct pipe_fds {
    unique_fd read;
    unique_fd write;
};
result<pipe_fds> make_pipe(int extra_flags = 0);

result<unique_fd> pidfd_open(pid_t pid);

// clone3() with fork semantics (the child gets a copy of our memory and returns 0 here).
// `flags` as for clone3_shared_vm. Returns the pid, 0 in the child, or -errno.
pid_t clone3_fork(std::uint64_t flags, int* pidfd, int cgroup_fd) noexcept;

// True where clone3_shared_vm() has a trampoline (x86_64).
bool have_shared_vm_clone() noexcept;

// clone3() with CLONE_VM on the given stack (its lowest address and size), as posix_spawn does:
// the caller's page tables are not copied. With CLONE_VFORK in `flags` the calling thread sleeps
// until the child execs or exits; without it both run on, and the stack and everything the child
// reads must stay mapped until then. The child runs fn(arg), which must end in execve or exit and
// may only use raw_syscall(): glibc wrappers would write errno into the caller's thread. Other
// `flags` are added (CLONE_PIDFD writes *pidfd, CLONE_INTO_CGROUP uses cgroup_fd). All signals
// are blocked around the call, so none of the caller's handlers can run in the child.
// Returns the pid or -errno; -ENOSYS without a trampoline.
pid_t clone3_shared_vm(std::uint64_t flags, int* pidfd, int cgroup_fd, void* stack, std::size_t stack_size,
                       void (*fn)(void*), void* arg) noexcept;

// A system call that returns -errno and never touches errno, for code running in a CLONE_VM
// child. Elsewhere (no trampoline, so no shared-VM child) it falls back to syscall(2).
long raw_syscall(long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0) noexcept;
// Sets the disposition of `sig` to SIG_DFL with raw system calls only (for CLONE_VM children).
void default_signal(int sig) noexcept;
// 0 or -errno.
int pidfd_send_signal(int pidfd, int sig, unsigned flags = 0) noexcept;
// Signals the process group led by the pidfd's process (kernel >= 6.9); -EINVAL before.
int pidfd_signal_group(int pidfd, int sig) noexcept;

struct wait_status {
    bool exited = false; // false: still running (WNOHANG) 
    int code = 0;        // si_code: CLD_EXITED, CLD_KILLED, CLD_DUMPED
    int status = 0;      // exit status or signal
    rusage usage{};
};
// waitid(P_PIDFD) with WEXITED|WNOHANG (and WNOWAIT when `peek`); rusage via the raw syscall.
result<wait_status> wait_pidfd(int pidfd, bool peek);

// Blocks until the process behind the pidfd exited and reaps it (EINTR retried).
void reap_pidfd(int pidfd) noexcept;

// Live (not zombie) members of process group `pgid`, by a scan of /proc: killed members stay
// zombies until their new parent reaps them, which a PIDFD_SIGNAL_PROCESS_GROUP probe counts.
int group_members(pid_t pgid);
// The same processes, by pid.
std::vector<pid_t> group_pids(pid_t pgid);

// Fields of /proc/PID/stat.
struct proc_stat {
    char state = 0;
    pid_t ppid = 0;
    pid_t pgid = 0;
    pid_t sid = 0;
    unsigned long long start_ticks = 0; // since boot, in clock ticks
};
std::optional<proc_stat> process_stat(pid_t pid);
// The caller's session id.
pid_t own_session() noexcept;

// Live (not zombie) descendants of `root`, by ppid chains in a scan of /proc; `root` itself
// is not counted.
int live_descendants(pid_t root);
std::vector<pid_t> live_descendant_pids(pid_t root);

// socketpair(AF_UNIX, SOCK_SEQPACKET): one message per send, EOF when the other end closes.
result<pipe_fds> make_seqpacket_pair();
// Sends one message; never raises SIGPIPE. 0 or -errno.
int send_message(int fd, const void* data, std::size_t size) noexcept;
// Receives one message: its size (0 at EOF) or -errno; -EAGAIN when `wait` is false and none
// is there. `peek` leaves it to be received again.
long receive_message(int fd, void* data, std::size_t size, bool wait, bool peek) noexcept;

// ppoll() one fd for `events` for at most `timeout` (negative = forever); EINTR retried.
// Returns revents (0 on timeout).
result<short> poll_one(int fd, short events, std::chrono::microseconds timeout);

// ppoll() two fds at once; revents of each (both 0 on timeout). fd2 < 0 is ignored.
result<std::pair<short, short>> poll_two(int fd1, short events1, int fd2, short events2,
                                          std::chrono::microseconds timeout);

// Names of the subdirectories of an open directory (not "." / "..").
result<std::vector<std::string>> list_subdirs(int dirfd, const std::string& what);
bool exists_at(int at, const std::string& path) noexcept;

int kill_pid(pid_t pid, int sig) noexcept; // 0 or -errno
int kill_group(pid_t pgid, int sig) noexcept; // 0 or -errno

std::chrono::steady_clock::time_point now() noexcept;
void sleep_for(std::chrono::microseconds d) noexcept;

} // namespace cgrun::sys
