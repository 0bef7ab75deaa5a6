// The system calls of the parent side, each returning what it touched with its errno.

#include "sys.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <unordered_set>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace cgrun::sys {

namespace {
// PIDFD_SIGNAL_PROCESS_GROUP from <linux/pidfd.h> of Linux 6.9; Debian 12's headers are older.
constexpr unsigned pidfd_signal_process_group = 1U << 2;

#if defined(__x86_64__)
// The child comes back from the syscall on the new stack with nothing to return to, so it must
// not go back into C code: it calls fn(arg) from here (r12/r13 are copied into the child) and
// exits should fn ever return. Only the parent reaches the label.
long raw_clone3(clone_args* args, void (*fn)(void*), void* arg) noexcept
{
    long ret;
    register void (*entry)(void*) asm("r12") = fn;
    register void* entry_arg asm("r13") = arg;
    asm volatile("syscall\n\t"
                 "testq %%rax, %%rax\n\t"
                 "jnz 1f\n\t"
                 "xorl %%ebp, %%ebp\n\t"
                 "movq %%r13, %%rdi\n\t"
                 "callq *%%r12\n\t"
                 "movl $60, %%eax\n\t" // SYS_exit
                 "movl $127, %%edi\n\t"
                 "syscall\n\t"
                 "hlt\n"
                 "1:"
                 : "=a"(ret)
                 : "0"(static_cast<long>(SYS_clone3)), "D"(args), "S"(sizeof *args), "r"(entry),
                   "r"(entry_arg)
                 : "rcx", "r11", "memory", "cc");
    return ret;
}
#endif
} // namespace

result<unique_fd> open_dir(int at, const std::string& path)
{
    int fd;
    do
        fd = ::openat(at, path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return error::from_errno(errno, "open " + path);
    return unique_fd{fd};
}

result<unique_fd> open_file(int at, const std::string& path, int flags)
{
    int fd;
    do
        fd = ::openat(at, path.c_str(), flags | O_CLOEXEC | O_NOCTTY);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return error::from_errno(errno, "open " + path);
    return unique_fd{fd};
}

result<std::string> pread_all(int fd, const std::string& what, bool one_record)
{
    std::string out;
    char buf[4096];
    off_t off = 0;
    for (;;) {
        ssize_t n = ::pread(fd, buf, sizeof buf, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return error::from_errno(errno, "read " + what);
        if (n == 0)
            break;
        out.append(buf, static_cast<size_t>(n));
        off += n;
        // A file shown as one seq_file record (cpu.stat, cgroup.events, /proc/PID/stat) comes
        // whole in one read unless it is larger than the read: a short read is its end. (Not
        // so for files of many records, e.g. cgroup.procs: a read stops before a record that
        // does not fit.)
        if (one_record && static_cast<size_t>(n) < sizeof buf)
            break;
    }
    return out;
}

result<std::string> read_file(int at, const std::string& path)
{
    auto fd = open_file(at, path, O_RDONLY);
    if (!fd)
        return fd.error();
    return pread_all(fd->get(), path);
}

result<std::string> read_record(int at, const std::string& path)
{
    auto fd = open_file(at, path, O_RDONLY);
    if (!fd)
        return fd.error();
    return pread_all(fd->get(), path, true);
}

result<void> write_file(int at, const std::string& path, std::string_view data)
{
    auto fd = open_file(at, path, O_WRONLY);
    if (!fd)
        return fd.error();
    ssize_t n;
    do
        n = ::write(fd->get(), data.data(), data.size());
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return error::from_errno(errno, "write " + path);
    if (static_cast<size_t>(n) != data.size())
        return error::from_errno(EIO, "short write " + path);
    return {};
}

result<void> make_dir(int at, const std::string& path, mode_t mode)
{
    if (::mkdirat(at, path.c_str(), mode) < 0)
        return error::from_errno(errno, "mkdir " + path);
    return {};
}

result<void> set_xattr(int fd, const std::string& name, std::string_view value)
{
    if (::fsetxattr(fd, name.c_str(), value.data(), value.size(), 0) < 0)
        return error::from_errno(errno, "setxattr " + name);
    return {};
}

bool has_xattr(int fd, const std::string& name) noexcept
{
    return ::fgetxattr(fd, name.c_str(), nullptr, 0) >= 0;
}

bool root_or_owner(int fd) noexcept
{
    struct stat st {};
    return ::geteuid() == 0 || (::fstat(fd, &st) == 0 && st.st_uid == ::geteuid());
}

result<std::string> get_xattr(int fd, const std::string& name)
{
    char buf[64];
    auto n = ::fgetxattr(fd, name.c_str(), buf, sizeof buf);
    if (n < 0)
        return error::from_errno(errno, "getxattr " + name);
    return std::string(buf, static_cast<std::size_t>(n));
}

int remove_dir(int at, const std::string& path) noexcept
{
    return ::unlinkat(at, path.c_str(), AT_REMOVEDIR) < 0 ? -errno : 0;
}

result<pipe_fds> make_pipe(int extra_flags)
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | extra_flags) < 0)
        return error::from_errno(errno, "pipe2");
    return pipe_fds{unique_fd{fds[0]}, unique_fd{fds[1]}};
}

bool have_shared_vm_clone() noexcept
{
#if defined(__x86_64__)
    return true;
#else
    return false;
#endif
}

namespace {
clone_args child_args(std::uint64_t flags, int* pidfd, int cgroup_fd) noexcept
{
    clone_args args{};
    args.flags = flags;
    args.pidfd = reinterpret_cast<std::uint64_t>(pidfd);
    args.exit_signal = SIGCHLD;
    if (flags & CLONE_INTO_CGROUP)
        args.cgroup = static_cast<std::uint64_t>(cgroup_fd);
    return args;
}
} // namespace

pid_t clone3_fork(std::uint64_t flags, int* pidfd, int cgroup_fd) noexcept
{
    clone_args args = child_args(flags, pidfd, cgroup_fd);
    return static_cast<pid_t>(raw_syscall(SYS_clone3, reinterpret_cast<long>(&args), sizeof args));
}

pid_t clone3_shared_vm(std::uint64_t flags, int* pidfd, int cgroup_fd, void* stack, std::size_t stack_size,
                       void (*fn)(void*), void* arg) noexcept
{
#if defined(__x86_64__)
    clone_args args = child_args(flags | CLONE_VM, pidfd, cgroup_fd);
    args.stack = reinterpret_cast<std::uint64_t>(stack);
    args.stack_size = stack_size;
    // The raw call blocks glibc's internal signals too (sigprocmask would leave SIGCANCEL and
    // SIGSETXID open); the kernel's sigset is 8 bytes on Linux.
    std::uint64_t all = ~std::uint64_t{0}, old = 0;
    (void)raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&all), reinterpret_cast<long>(&old),
                      sizeof all);
    long r = raw_clone3(&args, fn, arg);
    (void)raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&old), 0, sizeof old);
    return static_cast<pid_t>(r);
#else
    (void)flags, (void)pidfd, (void)cgroup_fd, (void)stack, (void)stack_size, (void)fn, (void)arg;
    return -ENOSYS;
#endif
}

// Called in CLONE_VM children: no sanitizer instrumentation.
__attribute__((no_sanitize("address", "undefined"))) long raw_syscall(long nr, long a, long b, long c, long d,
                                                                         long e, long f) noexcept
{
#if defined(__x86_64__)
    long ret;
    register long r10 asm("r10") = d;
    register long r8 asm("r8") = e;
    register long r9 asm("r9") = f;
    asm volatile("syscall"
                 : "=a"(ret)
                 : "0"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                 : "rcx", "r11", "memory", "cc");
    return ret;
#else
    long r = ::syscall(nr, a, b, c, d, e, f);
    return r < 0 ? -errno : r;
#endif
}

result<unique_fd> pidfd_open(pid_t pid)
{
    long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return error::from_errno(errno, "pidfd_open " + std::to_string(pid));
    return unique_fd{static_cast<int>(fd)};
}

__attribute__((no_sanitize("address", "undefined"))) void default_signal(int sig) noexcept
{
#if defined(__x86_64__)
    // The kernel's struct sigaction on x86_64 (glibc's is laid out differently). SIG_DFL needs
    // no restorer.
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)();
        std::uint64_t mask;
    } dfl{};
    (void)raw_syscall(SYS_rt_sigaction, sig, reinterpret_cast<long>(&dfl), 0, sizeof dfl.mask);
#else
    // No CLONE_VM child without the x86_64 trampoline: glibc's wrapper is safe here.
    struct sigaction dfl{};
    dfl.sa_handler = SIG_DFL;
    (void)::sigaction(sig, &dfl, nullptr);
#endif
}

int pidfd_send_signal(int pidfd, int sig, unsigned flags) noexcept
{
    return ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, flags) < 0 ? -errno : 0;
}

int pidfd_signal_group(int pidfd, int sig) noexcept
{
    return pidfd_send_signal(pidfd, sig, pidfd_signal_process_group);
}

result<wait_status> wait_pidfd(int pidfd, bool peek)
{
    siginfo_t si{};
    wait_status ws;
    int options = WEXITED | WNOHANG | (peek ? WNOWAIT : 0);
    long r;
    // glibc's waitid() has no rusage argument; the system call does.
    do
        r = ::syscall(SYS_waitid, P_PIDFD, pidfd, &si, options, &ws.usage);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return error::from_errno(errno, "waitid");
    if (si.si_pid == 0)
        return ws; // still running
    ws.exited = true;
    ws.code = si.si_code;
    ws.status = si.si_status;
    return ws;
}

result<short> poll_one(int fd, short events, std::chrono::microseconds timeout)
{
    struct pollfd p{fd, events, 0};
    auto deadline = now() + timeout;
    for (;;) {
        struct timespec ts{};
        struct timespec* tsp = nullptr;
        if (timeout.count() >= 0) {
            auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now()).count();
            if (left < 0)
                left = 0;
            ts.tv_sec = static_cast<time_t>(left / 1000000000);
            ts.tv_nsec = static_cast<long>(left % 1000000000);
            tsp = &ts;
        }
        int r = ::ppoll(&p, 1, tsp, nullptr);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return error::from_errno(errno, "poll");
        return r == 0 ? short{0} : p.revents;
    }
}

result<std::pair<short, short>> poll_two(int fd1, short events1, int fd2, short events2,
                                          std::chrono::microseconds timeout)
{
    struct pollfd p[2] = {{fd1, events1, 0}, {fd2, events2, 0}};
    struct timespec ts{};
    struct timespec* tsp = nullptr;
    if (timeout.count() >= 0) {
        ts.tv_sec = static_cast<time_t>(timeout.count() / 1000000);
        ts.tv_nsec = static_cast<long>(timeout.count() % 1000000) * 1000;
        tsp = &ts;
    }
    int r = ::ppoll(p, fd2 >= 0 ? 2 : 1, tsp, nullptr);
    if (r < 0 && errno == EINTR)
        return std::pair<short, short>{0, 0};
    if (r < 0)
        return error::from_errno(errno, "poll");
    return std::pair<short, short>{p[0].revents, fd2 >= 0 ? p[1].revents : short{0}};
}

result<std::vector<std::string>> list_subdirs(int dirfd, const std::string& what)
{
    // fdopendir takes ownership, so hand it a duplicate.
    int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
    if (dup < 0)
        return error::from_errno(errno, "dup " + what);
    DIR* d = ::fdopendir(dup);
    if (!d) {
        int e = errno;
        ::close(dup);
        return error::from_errno(e, "opendir " + what);
    }
    ::rewinddir(d);
    std::vector<std::string> out;
    errno = 0;
    while (struct dirent* e = ::readdir(d)) {
        if (e->d_type != DT_DIR)
            continue;
        std::string_view n{e->d_name};
        if (n == "." || n == "..")
            continue;
        out.emplace_back(n);
    }
    int err = errno;
    ::closedir(d);
    if (err)
        return error::from_errno(err, "readdir " + what);
    return out;
}

bool exists_at(int at, const std::string& path) noexcept
{
    return ::faccessat(at, path.c_str(), F_OK, 0) == 0;
}

void reap_pidfd(int pidfd) noexcept
{
    siginfo_t si{};
    while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si, WEXITED) < 0 && errno == EINTR) {
    }
}

std::optional<proc_stat> process_stat(pid_t pid)
{
    auto stat = sys::read_record(AT_FDCWD, "/proc/" + std::to_string(pid) + "/stat");
    if (!stat)
        return std::nullopt;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    auto close = stat->rfind(')');
    if (close == std::string::npos)
        return std::nullopt;
    proc_stat st;
    unsigned long long start = 0;
    if (std::sscanf(stat->c_str() + close + 1,
                    " %c %d %d %d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &st.state,
                    &st.ppid, &st.pgid, &st.sid, &start) != 5)
        return std::nullopt;
    st.start_ticks = start;
    return st;
}

std::vector<pid_t> group_pids(pid_t pgid)
{
    std::vector<pid_t> out;
    DIR* d = ::opendir("/proc");
    if (!d)
        return out;
    while (struct dirent* e = ::readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        pid_t pid = static_cast<pid_t>(std::strtol(e->d_name, nullptr, 10));
        auto st = process_stat(pid);
        if (st && st->pgid == pgid && st->state != 'Z' && st->state != 'X')
            out.push_back(pid);
    }
    ::closedir(d);
    return out;
}

pid_t own_session() noexcept
{
    return ::getsid(0);
}

int group_members(pid_t pgid)
{
    return static_cast<int>(group_pids(pgid).size());
}

int live_descendants(pid_t root)
{
    return static_cast<int>(live_descendant_pids(root).size());
}

std::vector<pid_t> live_descendant_pids(pid_t root)
{
    struct proc {
        int pid, ppid;
        bool live;
    };
    std::vector<proc> all;
    DIR* d = ::opendir("/proc");
    if (!d)
        return {};
    while (struct dirent* e = ::readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        auto stat = sys::read_record(AT_FDCWD, std::string("/proc/") + e->d_name + "/stat");
        if (!stat)
            continue;
        auto close = stat->rfind(')');
        if (close == std::string::npos)
            continue;
        char state = 0;
        int ppid = 0;
        if (std::sscanf(stat->c_str() + close + 1, " %c %d", &state, &ppid) == 2)
            all.push_back({std::atoi(e->d_name), ppid, state != 'Z' && state != 'X'});
    }
    ::closedir(d);
    // Closure over the parent links; /proc lists by pid, so after a pid wrap a child may come
    // before its parent: repeat until nothing is added.
    std::vector<bool> in(all.size(), false);
    std::unordered_set<int> members{root};
    for (bool grew = true; grew;) {
        grew = false;
        for (size_t i = 0; i < all.size(); ++i)
            if (!in[i] && members.count(all[i].ppid)) {
                in[i] = grew = true;
                members.insert(all[i].pid);
            }
    }
    std::vector<pid_t> out;
    for (size_t i = 0; i < all.size(); ++i)
        if (in[i] && all[i].live)
            out.push_back(all[i].pid);
    return out;
}

result<pipe_fds> make_seqpacket_pair()
{
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0)
        return error::from_errno(errno, "socketpair");
    return pipe_fds{unique_fd{fds[0]}, unique_fd{fds[1]}};
}

int send_message(int fd, const void* data, std::size_t size) noexcept
{
    ssize_t n;
    do
        n = ::send(fd, data, size, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

long receive_message(int fd, void* data, std::size_t size, bool wait, bool peek) noexcept
{
    int flags = (wait ? 0 : MSG_DONTWAIT) | (peek ? MSG_PEEK : 0);
    ssize_t n;
    do
        n = ::recv(fd, data, size, flags);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

int kill_pid(pid_t pid, int sig) noexcept
{
    return ::kill(pid, sig) < 0 ? -errno : 0;
}

int kill_group(pid_t pgid, int sig) noexcept
{
    if (pgid <= 1)
        return -EINVAL; // never kill(-1) or our own group by accident
    return ::kill(-pgid, sig) < 0 ? -errno : 0;
}

std::chrono::steady_clock::time_point now() noexcept
{
    return std::chrono::steady_clock::now();
}

void sleep_for(std::chrono::microseconds d) noexcept
{
    std::this_thread::sleep_for(d);
}

} // namespace cgrun::sys
