#include "spawn.hpp"

#include "sys.hpp"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

extern char** environ;

namespace cgrun::detail {

namespace {

enum class stage : int { setpgid = 1, signals, hold, stdio, fds, chdir, exec };

struct exec_report {
    int where;
    int err;
};

// Everything the child needs, built before fork: the child may not allocate.
struct child_plan {
    const char* path;
    char* const* argv;
    char* const* envp;
    const char* cwd; // nullptr = keep
    int go_fd;       // -1 unless held
    int report_fd;
    std::array<int, 3> stdio_src; // -1 = inherit
    const int* keep;              // sorted fds >= 3 that stay open (report_fd among them)
    size_t nkeep;
    const int* clear_cloexec;
    size_t nclear;
};

// The child may run on a vfork stack in our memory: ASan must not poison shadow for it.
#define CGRUN_CHILD_SIDE __attribute__((no_sanitize("address", "undefined")))

[[noreturn]] CGRUN_CHILD_SIDE void child_fail(const child_plan& p, stage s, int err)
{
    exec_report r{static_cast<int>(s), err};
    ssize_t n;
    do
        n = ::write(p.report_fd, &r, sizeof r);
    while (n < 0 && errno == EINTR);
    ::_exit(127);
}

CGRUN_CHILD_SIDE void close_from(unsigned from, unsigned to)
{
    if (from > to)
        return;
    if (::syscall(SYS_close_range, from, to, 0) == 0)
        return;
    // close_range (5.9) missing: close one by one up to a sane bound.
    for (unsigned fd = from; fd <= to && fd < 65536; ++fd)
        ::close(static_cast<int>(fd));
}

// Runs in the child: only async-signal-safe calls from here to execve.
[[noreturn]] CGRUN_CHILD_SIDE void child_main(const child_plan& p)
{
    if (::setpgid(0, 0) < 0)
        child_fail(p, stage::setpgid, errno);

    // Ignored dispositions and the blocked mask survive execve: reset both.
    struct sigaction dfl{};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    if (::sigprocmask(SIG_SETMASK, &none, nullptr) < 0)
        child_fail(p, stage::signals, errno);

    if (p.go_fd >= 0) {
        char b = 0;
        ssize_t n;
        do
            n = ::read(p.go_fd, &b, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1)
            ::_exit(127); // the parent gave up on us (scope refused, cgroup move failed)
    }

    // Lift every source above 2 first so that e.g. stderr -> stdout cannot clobber a source.
    std::array<int, 3> tmp{-1, -1, -1};
    for (int i = 0; i < 3; ++i)
        if (p.stdio_src[i] >= 0 && (tmp[i] = ::fcntl(p.stdio_src[i], F_DUPFD_CLOEXEC, 3)) < 0)
            child_fail(p, stage::stdio, errno);
    for (int i = 0; i < 3; ++i)
        if (tmp[i] >= 0 && ::dup2(tmp[i], i) < 0)
            child_fail(p, stage::stdio, errno);

    for (size_t i = 0; i < p.nclear; ++i)
        if (::fcntl(p.clear_cloexec[i], F_SETFD, 0) < 0)
            child_fail(p, stage::fds, errno);
    // Close everything >= 3 except the kept fds (sorted): a leaked cgroup dirfd or bus socket
    // would let the payload reach outside (runc CVE-2024-21626).
    unsigned next = 3;
    for (size_t i = 0; i < p.nkeep; ++i) {
        unsigned k = static_cast<unsigned>(p.keep[i]);
        if (k > next)
            close_from(next, k - 1);
        next = std::max(next, k + 1);
    }
    close_from(next, ~0U);

    if (p.cwd && ::chdir(p.cwd) < 0)
        child_fail(p, stage::chdir, errno);
    ::execve(p.path, p.argv, p.envp);
    child_fail(p, stage::exec, errno);
}

CGRUN_CHILD_SIDE void child_entry(void* plan)
{
    child_main(*static_cast<const child_plan*>(plan));
}

pid_t clone3_pidfd(int* pidfd, int cgroup_fd)
{
    struct clone_args args{};
    args.flags = CLONE_PIDFD | (cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0);
    args.pidfd = reinterpret_cast<std::uint64_t>(pidfd);
    args.exit_signal = SIGCHLD;
    if (cgroup_fd >= 0)
        args.cgroup = static_cast<std::uint64_t>(cgroup_fd);
    return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
}

std::vector<char*> c_strings(std::vector<std::string>& v)
{
    std::vector<char*> out;
    out.reserve(v.size() + 1);
    for (auto& s : v)
        out.push_back(s.data());
    out.push_back(nullptr);
    return out;
}

std::string path_of(const std::optional<std::vector<std::string>>& env)
{
    if (env) {
        for (auto& e : *env)
            if (e.compare(0, 5, "PATH=") == 0)
                return e.substr(5);
        return "/usr/local/bin:/usr/bin:/bin";
    }
    const char* p = std::getenv("PATH");
    return p ? p : "/usr/local/bin:/usr/bin:/bin";
}

} // namespace

bool clone_into_cgroup_disabled() noexcept
{
    static const bool disabled = [] {
        const char* v = std::getenv("CGRUN_TEST_NO_CLONE_INTO_CGROUP");
        return v && std::strcmp(v, "1") == 0;
    }();
    return disabled;
}

result<std::string> resolve_executable(const std::string& name, const std::optional<std::vector<std::string>>& env)
{
    if (name.empty())
        return error::make(errc::exec_not_found, "empty command name");
    if (name.find('/') != std::string::npos)
        return name;
    std::string path = path_of(env);
    std::string found_not_exec;
    size_t start = 0;
    for (;;) {
        size_t end = path.find(':', start);
        std::string dir = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
        std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
        struct stat st{};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
            if (::access(candidate.c_str(), X_OK) == 0)
                return candidate;
            if (found_not_exec.empty())
                found_not_exec = candidate;
        }
        if (end == std::string::npos)
            break;
        start = end + 1;
    }
    if (!found_not_exec.empty())
        return found_not_exec; // execve reports EACCES: "not executable"
    return error::make(errc::exec_not_found, name + ": command not found");
}

result<spawned> start_process(spawn_request req)
{
    if (req.argv.empty())
        return error::make(errc::invalid_argument, "empty argv");
    auto path = resolve_executable(req.argv[0], req.env);
    if (!path)
        return path.error();

    auto argv = c_strings(req.argv);
    std::vector<std::string> env_storage;
    std::vector<char*> envp;
    if (req.env) {
        env_storage = *req.env;
        envp = c_strings(env_storage);
    } else {
        // A vfork child reads this while the caller's other threads run on: a setenv() there may
        // reallocate the environ array (glibc never frees the strings), so pass a copy of it.
        for (char** e = environ; *e; ++e)
            envp.push_back(*e);
        envp.push_back(nullptr);
    }
    char* const* envp_ptr = envp.data();

    spawned out;
    auto report = sys::make_pipe();
    if (!report)
        return report.error();

    // stdio sources in the child; parent ends kept in `out`.
    std::array<unique_fd, 3> child_ends;
    unique_fd devnull;
    child_plan plan{};
    for (int i = 0; i < 3; ++i) {
        plan.stdio_src[i] = -1;
        switch (req.stdio[i].mode) {
        case stdio_spec::kind::inherit:
            break;
        case stdio_spec::kind::null:
            if (!devnull) {
                auto fd = sys::open_file(AT_FDCWD, "/dev/null", O_RDWR);
                if (!fd)
                    return fd.error();
                devnull = std::move(*fd);
            }
            plan.stdio_src[i] = devnull.get();
            break;
        case stdio_spec::kind::pipe: {
            auto p = sys::make_pipe();
            if (!p)
                return p.error();
            if (i == 0) {
                child_ends[i] = std::move(p->read);
                out.parent_ends[i] = std::move(p->write);
            } else {
                child_ends[i] = std::move(p->write);
                out.parent_ends[i] = std::move(p->read);
            }
            plan.stdio_src[i] = child_ends[i].get();
            break;
        }
        case stdio_spec::kind::fd:
            if (req.stdio[i].fd < 0)
                return error::make(errc::invalid_argument, "stdio fd " + std::to_string(req.stdio[i].fd));
            plan.stdio_src[i] = req.stdio[i].fd;
            break;
        }
    }

    std::vector<int> keep = req.inherit_fds;
    std::vector<int> clear;
    for (int fd : req.inherit_fds) {
        if (fd < 0 || ::fcntl(fd, F_GETFD) < 0)
            return error::make(errc::invalid_argument, "inherit fd " + std::to_string(fd) + " is not open");
        if (fd > 2)
            clear.push_back(fd);
    }
    keep.push_back(report->write.get());
    std::sort(keep.begin(), keep.end());

    unique_fd go_read;
    bool try_into_cgroup = req.cgroup_fd >= 0 && !clone_into_cgroup_disabled();
    bool hold = req.hold || (req.cgroup_fd >= 0 && !try_into_cgroup);

    plan.path = path->c_str();
    plan.argv = argv.data();
    plan.envp = envp_ptr;
    plan.cwd = req.cwd.empty() ? nullptr : req.cwd.c_str();
    plan.report_fd = report->write.get();
    plan.keep = keep.data();
    plan.nkeep = keep.size();
    plan.clear_cloexec = clear.data();
    plan.nclear = clear.size();

    auto prepare_hold = [&]() -> result<void> {
        auto go = sys::make_pipe();
        if (!go)
            return go.error();
        go_read = std::move(go->read);
        out.go = std::move(go->write);
        plan.go_fd = go_read.get();
        return {};
    };
    plan.go_fd = -1;
    if (hold)
        if (auto r = prepare_hold(); !r)
            return r.error();

    int pidfd = -1;
    pid_t pid = -1;
    bool vforked = false;
    if (!hold) {
        // Nothing has to happen between clone and exec: share our memory instead of copying the
        // page tables (a fork from a 256 MiB service costs milliseconds). On any failure the
        // fork path below runs and reports.
        pid = sys::clone3_vfork(CLONE_PIDFD | (try_into_cgroup ? CLONE_INTO_CGROUP : 0), &pidfd,
                                try_into_cgroup ? req.cgroup_fd : -1, child_entry, &plan);
        vforked = pid > 0;
    }
    if (!vforked)
        pid = clone3_pidfd(&pidfd, try_into_cgroup ? req.cgroup_fd : -1);
    bool into = try_into_cgroup && pid >= 0;
    if (pid < 0 && try_into_cgroup) {
        // CLONE_INTO_CGROUP refused (old kernel, seccomp, EBUSY/EOPNOTSUPP target): fork
        // plainly and let the caller write cgroup.procs before the child may exec.
        if (!hold) {
            hold = true;
            if (auto r = prepare_hold(); !r)
                return r.error();
        }
        pid = clone3_pidfd(&pidfd, -1);
    }
    if (pid < 0 && (errno == ENOSYS || errno == EPERM || errno == E2BIG)) {
        // No clone3 at all (kernel < 5.3 or a seccomp filter): fork, then pidfd_open. Our
        // child cannot be reaped by anyone else before we open it, so the pid is stable.
        pid = ::fork();
        if (pid == 0)
            child_main(plan);
        if (pid > 0) {
            auto fd = sys::pidfd_open(pid);
            if (!fd) {
                ::kill(pid, SIGKILL);
                siginfo_t si;
                ::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED);
                return fd.error();
            }
            pidfd = fd->release();
        }
    } else if (pid == 0) {
        child_main(plan);
    }
    if (pid < 0)
        return error::make(errc::spawn_failed, "clone3 " + req.argv[0] + ": " + std::strerror(errno));

    // The child sets its own process group too; doing it here as well closes the window in
    // which a kill of the group could miss a child that has not run yet.
    if (!vforked)
        (void)::setpgid(pid, pid);

    out.pid = pid;
    out.pidfd = unique_fd{pidfd};
    out.in_cgroup = into;
    out.path = *path;
    out.exec_status = std::move(report->read);
    return out;
}

result<sentinel> start_sentinel()
{
    auto p = sys::make_pipe();
    if (!p)
        return p.error();
    int keep = p->read.get();
    int pidfd = -1;
    pid_t pid = clone3_pidfd(&pidfd, -1);
    if (pid == 0) {
        // Hold no descriptor of the parent's (a pipe end kept here would delay someone's EOF).
        close_from(3, static_cast<unsigned>(keep) - 1);
        close_from(static_cast<unsigned>(keep) + 1, ~0U);
        // Only SIGKILL (cgroup.kill) may end it early: no handler of the parent's may run here.
        sigset_t all;
        sigfillset(&all);
        (void)::sigprocmask(SIG_SETMASK, &all, nullptr);
        // An OOM kill of the whole cgroup (memory.oom.group) spares OOM_SCORE_ADJ_MIN tasks:
        // the sentinel must outlive it to be of use. Needs CAP_SYS_RESOURCE; best effort.
        int adj = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (adj >= 0) {
            (void)!::write(adj, "-1000", 5);
            ::close(adj);
        }
        char b;
        while (::read(keep, &b, 1) < 0 && errno == EINTR) {
        }
        ::_exit(0);
    }
    if (pid < 0)
        return error::make(errc::spawn_failed, std::string("clone3 sentinel: ") + std::strerror(errno));
    return sentinel{pid, unique_fd{pidfd}, std::move(p->write)};
}

void stop_sentinel(sentinel& s) noexcept
{
    if (!s.pidfd)
        return;
    s.release.reset();
    sys::reap_pidfd(s.pidfd.get());
    s.pidfd.reset();
    s.pid = -1;
}

result<void> release(spawned& s)
{
    if (s.go) {
        char b = 1;
        ssize_t n;
        do
            n = ::write(s.go.get(), &b, 1);
        while (n < 0 && errno == EINTR);
        s.go.reset();
        if (n != 1)
            return error::from_errno(errno, "release child " + std::to_string(s.pid));
    }
    exec_report r{};
    ssize_t n;
    do
        n = ::read(s.exec_status.get(), &r, sizeof r);
    while (n < 0 && errno == EINTR);
    s.exec_status.reset();
    if (n == 0)
        return {}; // the pipe closed on exec
    if (n != static_cast<ssize_t>(sizeof r))
        return error::make(errc::exec_failed, "child " + std::to_string(s.pid) + " died before exec");
    std::string msg = std::strerror(r.err);
    switch (static_cast<stage>(r.where)) {
    case stage::exec:
        if (r.err == ENOENT)
            return error::make(errc::exec_not_found, s.path + ": " + msg);
        if (r.err == EACCES || r.err == ENOEXEC || r.err == EISDIR || r.err == EPERM)
            return error::make(errc::exec_not_executable, s.path + ": " + msg);
        return error::make(errc::exec_failed, "execve " + s.path + ": " + msg);
    case stage::chdir:
        return error::make(errc::exec_failed, "chdir: " + msg);
    case stage::setpgid:
        return error::make(errc::exec_failed, "setpgid: " + msg);
    case stage::signals:
        return error::make(errc::exec_failed, "sigprocmask: " + msg);
    case stage::stdio:
        return error::make(errc::exec_failed, "dup2 stdio: " + msg);
    case stage::fds:
        return error::make(errc::exec_failed, "inherit fds: " + msg);
    case stage::hold:
        break;
    }
    return error::make(errc::exec_failed, msg);
}

} // namespace cgrun::detail
