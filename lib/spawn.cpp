// Starting the command: the launch plan, clone3/fork, and the child side up to execve.

#include "spawn.hpp"

#include "sys.hpp"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <type_traits>

extern char** environ;

namespace cgrun::detail {

namespace {

enum class stage : int { setpgid = 1, signals, hold, stdio, fds, chdir, exec, nice, groups, gid, uid };

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
    bool set_nice;
    int nice;
    bool set_ids; // groups, gid and uid (each of the latter two only if >= 0)
    const gid_t* groups;
    size_t ngroups;
    long gid;
    long uid;
    int go_fd;       // -1 unless held
    int report_fd;   // -1: report into *report_mem (a vfork-style child on our memory)
    exec_report* report_mem;
    std::array<int, 3> stdio_src; // -1 = inherit
    const int* keep;              // sorted fds >= 3 that stay open (report_fd among them)
    size_t nkeep;
    const int* clear_cloexec;
    size_t nclear;
};

// The child may run on a stack in our memory (CLONE_VM): ASan must not poison shadow for it,
// and no glibc wrapper may run there (errno is our thread's). Only sys::raw_syscall().
#define CGRUN_CHILD_SIDE __attribute__((no_sanitize("address", "undefined")))

template <typename T>
long arg(T v) noexcept
{
    if constexpr (std::is_pointer_v<T>)
        return reinterpret_cast<long>(v);
    else
        return static_cast<long>(v);
}

[[noreturn]] CGRUN_CHILD_SIDE void child_exit()
{
    for (;;)
        (void)sys::raw_syscall(SYS_exit_group, 127);
}

[[noreturn]] CGRUN_CHILD_SIDE void child_fail(const child_plan& p, stage s, long neg_errno)
{
    exec_report r{static_cast<int>(s), static_cast<int>(-neg_errno)};
    if (p.report_fd < 0) {
        // vfork-style: the parent sleeps until we are gone, then reads it.
        volatile exec_report* m = p.report_mem;
        m->where = r.where;
        m->err = r.err;
        child_exit();
    }
    while (sys::raw_syscall(SYS_write, p.report_fd, arg(&r), sizeof r) == -EINTR) {
    }
    child_exit();
}

CGRUN_CHILD_SIDE void close_from(unsigned from, unsigned to)
{
    if (from > to)
        return;
    if (sys::raw_syscall(SYS_close_range, from, to, 0) == 0)
        return;
    // close_range (5.9) missing: close one by one up to a sane bound.
    for (unsigned fd = from; fd <= to && fd < 65536; ++fd)
        (void)sys::raw_syscall(SYS_close, fd);
}


// Runs in the child: raw system calls only, from here to execve.
[[noreturn]] CGRUN_CHILD_SIDE void child_main(const child_plan& p)
{
    long r;
    if ((r = sys::raw_syscall(SYS_setpgid, 0, 0)) < 0)
        child_fail(p, stage::setpgid, r);

    // Ignored dispositions and the blocked mask survive execve: reset both (signals 1..64; the
    // mask the spawner set around clone3 blocks them all until here).
    for (int sig = 1; sig <= 64; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP)
            sys::default_signal(sig);
    std::uint64_t none = 0;
    if ((r = sys::raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, arg(&none), 0, sizeof none)) < 0)
        child_fail(p, stage::signals, r);

    if (p.go_fd >= 0) {
        char b = 0;
        do
            r = sys::raw_syscall(SYS_read, p.go_fd, arg(&b), 1);
        while (r == -EINTR);
        if (r != 1)
            child_exit(); // the parent gave up on us (scope refused, cgroup move failed)
    }

    // Lift every source above 2 first so that e.g. stderr -> stdout cannot clobber a source.
    int tmp[3] = {-1, -1, -1};
    for (int i = 0; i < 3; ++i)
        if (p.stdio_src[i] >= 0) {
            if ((r = sys::raw_syscall(SYS_fcntl, p.stdio_src[i], F_DUPFD_CLOEXEC, 3)) < 0)
                child_fail(p, stage::stdio, r);
            tmp[i] = static_cast<int>(r);
        }
    for (int i = 0; i < 3; ++i)
        if (tmp[i] >= 0 && (r = sys::raw_syscall(SYS_dup3, tmp[i], i, 0)) < 0)
            child_fail(p, stage::stdio, r);

    for (size_t i = 0; i < p.nclear; ++i)
        if ((r = sys::raw_syscall(SYS_fcntl, p.clear_cloexec[i], F_SETFD, 0)) < 0)
            child_fail(p, stage::fds, r);
    // Close everything >= 3 except the kept fds (sorted): a leaked cgroup dirfd or bus socket
    // would let the payload reach outside (runc CVE-2024-21626).
    unsigned next = 3;
    for (size_t i = 0; i < p.nkeep; ++i) {
        unsigned k = static_cast<unsigned>(p.keep[i]);
        if (k > next)
            close_from(next, k - 1);
        next = k + 1 > next ? k + 1 : next;
    }
    close_from(next, ~0U);

    // Raising priority needs root: before the identity changes.
    if (p.set_nice && (r = sys::raw_syscall(SYS_setpriority, PRIO_PROCESS, 0, p.nice)) < 0)
        child_fail(p, stage::nice, r);
    // Groups while we may still set them, the uid last. The raw calls change this task only;
    // glibc's wrappers would try to make every thread it knows of follow (setxid broadcast).
    if (p.set_ids) {
        if ((r = sys::raw_syscall(SYS_setgroups, p.ngroups, arg(p.groups))) < 0)
            child_fail(p, stage::groups, r);
        if (p.gid >= 0 && (r = sys::raw_syscall(SYS_setresgid, p.gid, p.gid, p.gid)) < 0)
            child_fail(p, stage::gid, r);
        if (p.uid >= 0 && (r = sys::raw_syscall(SYS_setresuid, p.uid, p.uid, p.uid)) < 0)
            child_fail(p, stage::uid, r);
    }
    // After the identity change: the directory is entered with the user's rights.
    if (p.cwd && (r = sys::raw_syscall(SYS_chdir, arg(p.cwd))) < 0)
        child_fail(p, stage::chdir, r);
    r = sys::raw_syscall(SYS_execve, arg(p.path), arg(p.argv), arg(p.envp));
    child_fail(p, stage::exec, r);
}

CGRUN_CHILD_SIDE void child_entry(void* plan)
{
    child_main(*static_cast<const child_plan*>(plan));
}

} // namespace

// Everything child_plan points to. The child of a CLONE_VM clone reads it, and a held one does so
// while we run on: it lives on the heap until the child has exec'd or died.
struct launch {
    std::string path;
    std::vector<std::string> argv_storage;
    std::vector<char*> argv;
    std::vector<std::string> env_storage;
    std::vector<char*> envp;
    std::string cwd;
    std::vector<gid_t> groups;
    std::vector<int> keep;
    std::vector<int> clear;
    child_plan plan{};
    exec_report failure{}; // where a vfork-style child reports (plan.report_mem)
    void* stack = nullptr;
    size_t stack_size = 0;
    bool own_stack = false; // mapped for this launch (else the thread's vfork stack)
    unique_fd guard; // the held child's pidfd (a dup) while it may still run on `stack`
};

namespace {

// Runs in the intermediate of spawn_request::via (a single-threaded fork of ours): clones the
// command as start_process would, sharing the intermediate's memory on the prepared stack
// (vfork-style, so no page tables are copied) where there is one.
CGRUN_CHILD_SIDE pid_t start_via(const void* image) noexcept
{
    auto* l = static_cast<const launch*>(image);
    auto* plan = const_cast<child_plan*>(&l->plan);
    if (l->stack) {
        pid_t p = sys::clone3_shared_vm(CLONE_VFORK, nullptr, -1, l->stack, l->stack_size, child_entry, plan);
        if (p != -ENOSYS && p != -EPERM && p != -E2BIG)
            return p;
    }
    pid_t p = sys::clone3_fork(0, nullptr, -1);
    if (p == -ENOSYS || p == -EPERM || p == -E2BIG)
        p = static_cast<pid_t>(sys::raw_syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
    if (p == 0)
        child_main(*plan);
    return p;
}

} // namespace

spawn_request launch_request(const options& o)
{
    spawn_request r;
    r.argv = o.argv;
    r.env = o.env;
    r.cwd = o.cwd;
    r.nice = o.nice;
    r.run_as = o.run_as;
    r.stdio = o.stdio;
    r.inherit_fds = o.inherit_fds;
    return r;
}

void reaping_pidfd::reset() noexcept
{
    if (!fd_)
        return;
    (void)sys::pidfd_send_signal(fd_.get(), SIGKILL);
    sys::reap_pidfd(fd_.get());
    fd_.reset();
}

void launch_free::operator()(launch* l) const noexcept
{
    if (l->guard) {
        // Not known to have exec'd: it must be gone before what it reads is. Normally it is
        // dead already (exec failed, or it was discarded); bounded, and on a hang (a task stuck
        // in D state) all of it is leaked rather than pulled from under a live process.
        (void)sys::pidfd_send_signal(l->guard.get(), SIGKILL);
        auto ready = sys::poll_one(l->guard.get(), POLLIN, std::chrono::seconds(5));
        if (!ready || *ready == 0)
            return;
    }
    if (l->stack && l->own_stack)
        ::munmap(l->stack, l->stack_size);
    delete l;
}

namespace {

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

namespace {
// fork(), then pidfd_open() of the child: our child cannot be reaped by anyone else before
// we open it, so the pid is stable. `pid` is the child's pid, 0 in the child, or -errno.
result<void> fork_with_pidfd(pid_t& pid, int& pidfd)
{
    pid = ::fork();
    if (pid < 0)
        pid = -errno;
    if (pid <= 0)
        return {};
    auto fd = sys::pidfd_open(pid);
    if (!fd) {
        ::kill(pid, SIGKILL);
        siginfo_t si;
        ::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED);
        return fd.error();
    }
    pidfd = fd->release();
    return {};
}
} // namespace

namespace {

// What start_process builds before it clones: the launch (everything the child reads) and the
// descriptors the child gets.
struct launch_parts {
    std::unique_ptr<launch, launch_free> image{new launch};
    std::array<unique_fd, 3> child_ends;
    unique_fd devnull;
    sys::pipe_fds report; // the child writes {stage, errno} here if it fails before exec
};

// Builds the launch plan of `req`: argv, envp, cwd, stdio sources (parent ends of pipes go to
// `out`), the fds to keep; nothing is started.
result<void> build_plan(const spawn_request& req, std::string path, launch_parts& parts, spawned& out)
{
    launch* L = parts.image.get();
    child_plan& plan = L->plan;
    L->path = std::move(path);
    L->argv_storage = req.argv;
    L->argv = c_strings(L->argv_storage);
    if (req.env) {
        L->env_storage = *req.env;
        L->envp = c_strings(L->env_storage);
    } else {
        // The child reads this while the caller's other threads run on: a setenv() there may
        // reallocate the environ array (glibc never frees the strings), so pass a copy of it.
        for (char** e = environ; *e; ++e)
            L->envp.push_back(*e);
        L->envp.push_back(nullptr);
    }
    L->cwd = req.cwd;
    const identity& id = req.run_as;
    plan.set_nice = req.nice.has_value();
    plan.nice = req.nice.value_or(0);
    plan.set_ids = id.uid || id.gid || id.groups;
    if (id.groups)
        L->groups = *id.groups;
    plan.groups = L->groups.data();
    plan.ngroups = L->groups.size();
    plan.gid = id.gid ? static_cast<long>(*id.gid) : -1;
    plan.uid = id.uid ? static_cast<long>(*id.uid) : -1;

    // stdio sources in the child; parent ends kept in `out`.
    auto& child_ends = parts.child_ends;
    auto& devnull = parts.devnull;
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

    L->keep = req.inherit_fds;
    for (int fd : req.inherit_fds) {
        if (fd < 0 || ::fcntl(fd, F_GETFD) < 0)
            return error::make(errc::invalid_argument, "inherit fd " + std::to_string(fd) + " is not open");
        if (fd > 2)
            L->clear.push_back(fd);
    }
    std::sort(L->keep.begin(), L->keep.end());

    plan.path = L->path.c_str();
    plan.argv = L->argv.data();
    plan.envp = L->envp.data();
    plan.cwd = L->cwd.empty() ? nullptr : L->cwd.c_str();
    plan.report_fd = -1; // add_report_pipe() unless the child is vfork-style on our memory
    plan.report_mem = &L->failure;
    plan.keep = L->keep.data();
    plan.nkeep = L->keep.size();
    plan.clear_cloexec = L->clear.data();
    plan.nclear = L->clear.size();

    return {};
}

// A child that runs on while we do, or on a copy of our memory, reports a failure before
// exec through a pipe, whose closing on exec also says that it has exec'd.
result<void> add_report_pipe(launch_parts& parts)
{
    if (parts.report.write)
        return {};
    auto report = sys::make_pipe();
    if (!report)
        return report.error();
    parts.report = std::move(*report);
    launch* L = parts.image.get();
    L->keep.insert(std::upper_bound(L->keep.begin(), L->keep.end(), parts.report.write.get()),
                   parts.report.write.get());
    L->plan.keep = L->keep.data();
    L->plan.nkeep = L->keep.size();
    L->plan.report_fd = parts.report.write.get();
    return {};
}

// The stack of vfork-style children, one per thread: we sleep until the child has exec'd or
// died, so it is free again when clone3 returns. Saves a map and an unmap (a TLB shootdown
// in a threaded spawner) per spawn.
constexpr size_t child_stack_size = 64 * 1024; // raw syscalls only: the child needs a few hundred bytes

void* map_stack()
{
    void* p = ::mmap(nullptr, child_stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
}

void* vfork_stack()
{
    thread_local struct spare {
        void* p = map_stack();
        ~spare()
        {
            if (p)
                ::munmap(p, child_stack_size);
        }
    } stack;
    return stack.p;
}

} // namespace

result<spawned> start_process(spawn_request req)
{
    if (req.argv.empty())
        return error::make(errc::invalid_argument, "empty argv");
    auto path = resolve_executable(req.argv[0], req.env);
    if (!path)
        return path.error();

    spawned out;
    out.cwd = req.cwd;
    out.run_as = req.run_as;
    out.nice = req.nice;
    launch_parts parts;
    if (auto r = build_plan(req, std::move(*path), parts, out); !r)
        return r.error();
    auto& L = parts.image;
    child_plan& plan = L->plan;

    unique_fd go_read;
    bool try_into_cgroup = req.cgroup_fd >= 0 && !clone_into_cgroup_disabled();
    bool hold = req.hold || (req.cgroup_fd >= 0 && !try_into_cgroup);

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

    // First choice: share our memory instead of copying the page tables (a fork from a 256 MiB
    // service costs milliseconds). Unheld, as vfork: we sleep until the child has exec'd. Held
    // (a scope must own it first), both run on and `L` stays with `out` until the exec.
    // Not with another identity: the kernel makes an mm whose task changes its euid or egid
    // non-dumpable (commit_creds), and a shared mm is ours: we would lose core dumps and
    // /proc ownership for good. A copy of the page tables is the price of run_as.
    // Held, or through an intermediate (a copy of us), the child has a stack of its own and
    // reports through a pipe.
    auto own_stack = [&] {
        if (L->stack && !L->own_stack)
            L->stack = nullptr;
        if (!L->stack && sys::have_shared_vm_clone() && !plan.set_ids) {
            L->stack = map_stack();
            L->own_stack = L->stack != nullptr;
        }
    };
    if (sys::have_shared_vm_clone() && !plan.set_ids) {
        L->stack_size = child_stack_size;
        if (hold || req.via)
            own_stack();
        else
            L->stack = vfork_stack();
    }
    if (req.via) {
        if (hold)
            return error::make(errc::invalid_argument, "a command started through an intermediate cannot be held");
        if (auto r = add_report_pipe(parts); !r)
            return r.error();
        // A copy of us, not sharing our memory: the intermediate lives as long as the tree.
        int pidfd = -1;
        pid_t pid = sys::clone3_fork(CLONE_PIDFD, &pidfd, -1);
        if (pid == -ENOSYS || pid == -EPERM || pid == -E2BIG)
            if (auto r = fork_with_pidfd(pid, pidfd); !r)
                return r.error();
        if (pid == 0) {
            req.via(req.via_arg, start_via, L.get());
            child_exit();
        }
        if (pid < 0)
            return error::make(errc::spawn_failed, "fork (intermediate of " + req.argv[0] + "): " + std::strerror(-pid));
        out.pid = pid;
        out.pidfd = reaping_pidfd{unique_fd{pidfd}};
        out.path = L->path;
        out.exec_status = std::move(parts.report.read);
        return out;
    }

    int pidfd = -1;
    bool shared = false;
    // The pid, or -errno.
    auto start = [&](bool into_cgroup) -> pid_t {
        std::uint64_t flags = CLONE_PIDFD | (into_cgroup ? CLONE_INTO_CGROUP : 0);
        int cgroup_fd = into_cgroup ? req.cgroup_fd : -1;
        if (L->stack) {
            if (hold)
                if (auto r = add_report_pipe(parts); !r)
                    return -r.error().code.value();
            pid_t p = sys::clone3_shared_vm(flags | (hold ? 0 : CLONE_VFORK), &pidfd, cgroup_fd, L->stack,
                                            L->stack_size, child_entry, &plan);
            if (p > 0) {
                shared = true;
                return p;
            }
        }
        if (auto r = add_report_pipe(parts); !r)
            return -r.error().code.value();
        pid_t p = sys::clone3_fork(flags, &pidfd, cgroup_fd);
        if (p == 0)
            child_main(plan);
        return p;
    };
    pid_t pid = start(try_into_cgroup);
    bool into = try_into_cgroup && pid > 0;
    if (pid < 0 && try_into_cgroup) {
        // CLONE_INTO_CGROUP refused (old kernel, seccomp, EBUSY/EOPNOTSUPP target): hold the
        // child and let the caller write cgroup.procs before it may exec.
        if (!hold) {
            hold = true;
            if (auto r = prepare_hold(); !r)
                return r.error();
            own_stack();
        }
        pid = start(false);
    }
    if (pid == -ENOSYS || pid == -EPERM || pid == -E2BIG) {
        // No clone3 at all (kernel < 5.3 or a seccomp filter): fork, then pidfd_open.
        if (auto r = add_report_pipe(parts); !r)
            return r.error();
        if (auto r = fork_with_pidfd(pid, pidfd); !r)
            return r.error();
        if (pid == 0)
            child_main(plan);
    }
    if (pid < 0)
        return error::make(errc::spawn_failed, "clone3 " + req.argv[0] + ": " + std::strerror(-pid));

    out.pid = pid;
    out.pidfd = reaping_pidfd{unique_fd{pidfd}};
    if (shared && hold) {
        // It runs on our memory until it execs: keep what it reads, and a way to make sure it
        // is dead before that memory goes. (Sharing the mm also means the OOM killer would take
        // both of us if it chose either in that window; its pages are charged to our memcg, not
        // to the scope's, so a tight MemoryMax on the scope cannot trigger that.)
        int dup = ::fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
        if (dup < 0) {
            int err = errno;
            (void)sys::pidfd_send_signal(pidfd, SIGKILL);
            sys::reap_pidfd(pidfd);
            return error::from_errno(err, "dup pidfd of child " + std::to_string(pid));
        }
        L->guard = unique_fd{dup};
    }

    // The child sets its own process group too; doing it here as well closes the window in
    // which a kill of the group could miss a child that has not run yet (a vfork child has).
    if (hold || !shared)
        (void)::setpgid(pid, pid);

    out.in_cgroup = into;
    out.path = L->path;
    out.exec_status = std::move(parts.report.read);
    if (!out.exec_status) {
        // vfork-style: it has exec'd or died by now.
        out.failed_stage = L->failure.where;
        out.failed_errno = L->failure.err;
    }
    if (shared && hold)
        out.image = std::move(L);
    return out;
}

result<sentinel> start_sentinel()
{
    auto p = sys::make_pipe();
    if (!p)
        return p.error();
    int keep = p->read.get();
    int pidfd = -1;
    pid_t pid = sys::clone3_fork(CLONE_PIDFD, &pidfd, -1);
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
        return error::make(errc::spawn_failed, std::string("clone3 sentinel: ") + std::strerror(-pid));
    return sentinel(pid, unique_fd{pidfd}, std::move(p->write));
}

sentinel::~sentinel()
{
    stop_sentinel(*this);
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
    exec_report r{s.failed_stage, s.failed_errno};
    ssize_t n = r.where ? static_cast<ssize_t>(sizeof r) : 0;
    if (s.exec_status) {
        do
            n = ::read(s.exec_status.get(), &r, sizeof r);
        while (n < 0 && errno == EINTR);
        s.exec_status.reset();
    }
    if (n == 0) {
        // The pipe closed on exec (after the kernel switched the child to its new memory) or
        // on the child's death: either way it no longer runs on ours.
        if (s.image)
            s.image->guard.reset();
        s.image.reset();
        return {}; // the pipe closed on exec
    }
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
        return error::make(errc::exec_failed, "chdir " + s.cwd + ": " + msg);
    case stage::nice:
        return error::make(errc::exec_failed, "setpriority " + std::to_string(s.nice.value_or(0)) + ": " + msg);
    case stage::groups: {
        std::size_t n = s.run_as.groups ? s.run_as.groups->size() : 0;
        return error::make(errc::exec_failed, "setgroups (" + std::to_string(n) + " groups): " + msg);
    }
    case stage::gid:
        return error::make(errc::exec_failed, "setresgid " + std::to_string(s.run_as.gid.value_or(0)) + ": " + msg);
    case stage::uid:
        return error::make(errc::exec_failed, "setresuid " + std::to_string(s.run_as.uid.value_or(0)) + ": " + msg);
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
