// The subreaper method: no cgroup, but a small reaper process per child that is a child
// subreaper (PR_SET_CHILD_SUBREAPER) and starts the command, so setsid and double-fork
// escapees are re-parented to it, and it can find, kill and reap every one of them.
//
// The reaper is a fork of the spawner (the embedding process gets no process-wide setting)
// and lives as long as the tree. It talks to the spawner over a SOCK_SEQPACKET socketpair:
//   spawner -> reaper: signal the tree with SIG (then SIGCONT); kill the tree; let go.
//   reaper -> spawner: the command's pid once started; once, the command's exit (si_code,
//   status, rusage), after which it shuts down its sending side, so the spawner's end stays
//   readable: that end (a duplicate) is what child::pidfd() gives.
// The reaper kills the tree by itself when the spawner is gone: EOF on the socket, or the
// spawner's pidfd readable (a forked copy of the spawner may still hold the socket). It exits
// once the command has exited and it has no children left: its pidfd readable is "the tree
// is empty", and its rusage then covers every process of the tree it reaped.

#include "tree.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace cgrun::detail {

using namespace std::chrono_literals;

namespace {

// Spawner -> reaper, one per message.
enum : int { op_signal = 1, op_kill = 2, op_release = 3 };
struct order {
    int op;
    int sig;
};

// Reaper -> spawner: first `started` (the command's pid, or -errno), then once `exited`.
enum : int { news_started = 1, news_exited = 2 };
struct news {
    int kind;
    int pid;
    int code;   // si_code: CLD_EXITED, CLD_KILLED, CLD_DUMPED
    int status; // exit status or signal
    int alone;  // no other child left when the command was reaped: the tree is empty
    rusage usage;
};

// ---- the reaper ---------------------------------------------------------------------------
//
// It runs in a fork of a spawner whose other threads may have held locks (malloc's, ASan's)
// at the fork: raw system calls only, no allocation, no sanitizer instrumentation, and its
// large buffers in memory it maps itself rather than on the stack it inherited (the spawning
// thread's, which may be small).

#define REAPER_SIDE __attribute__((no_sanitize("address", "undefined")))

template <typename T>
REAPER_SIDE long arg(T v) noexcept
{
    if constexpr (std::is_pointer_v<T>)
        return reinterpret_cast<long>(v);
    else
        return static_cast<long>(v);
}

struct proc_entry {
    int pid;
    int ppid;
    int member;
};

constexpr std::size_t max_procs = std::size_t{1} << 20;     // processes on the host we look at
constexpr std::size_t max_pid = std::size_t{1} << 22;       // PID_MAX_LIMIT on 64-bit
constexpr std::size_t dirent_buffer = 32 * 1024;

struct reaper_args {
    pid_t spawner;
    int ctl; // the reaper's end
};

struct reaper_state {
    int ctl = -1;
    int sigfd = -1;
    int spawner = -1; // pidfd of the spawner
    pid_t self = -1;
    pid_t main = -1;
    bool main_done = false;
    bool killing = false;
    bool ctl_open = true;
    // Scan memory, mapped on first use.
    proc_entry* procs = nullptr;
    std::uint64_t* bits = nullptr;
    char* dents = nullptr;
};

[[noreturn]] REAPER_SIDE void leave(int code)
{
    for (;;)
        (void)sys::raw_syscall(SYS_exit_group, code);
}

REAPER_SIDE void tell(const reaper_state& r, const news& n)
{
    // A spawner that is gone gets nothing: EPIPE (SIGPIPE is blocked here).
    while (sys::raw_syscall(SYS_write, r.ctl, arg(&n), sizeof n) == -EINTR) {
    }
}

REAPER_SIDE bool map_buffers(reaper_state& r)
{
    if (r.procs)
        return true;
    std::size_t size = max_procs * sizeof(proc_entry) + max_pid / 8 + dirent_buffer;
    long m = sys::raw_syscall(SYS_mmap, 0, static_cast<long>(size), PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m < 0 && m > -4096)
        return false;
    auto* base = reinterpret_cast<char*>(m);
    r.procs = reinterpret_cast<proc_entry*>(base);
    r.bits = reinterpret_cast<std::uint64_t*>(base + max_procs * sizeof(proc_entry));
    r.dents = base + max_procs * sizeof(proc_entry) + max_pid / 8;
    return true;
}

REAPER_SIDE bool has_bit(const reaper_state& r, int pid)
{
    auto p = static_cast<std::size_t>(pid);
    return p < max_pid && (r.bits[p / 64] >> (p % 64) & 1U) != 0;
}

REAPER_SIDE void put_bit(reaper_state& r, int pid, bool on)
{
    auto p = static_cast<std::size_t>(pid);
    if (p >= max_pid)
        return;
    if (on)
        r.bits[p / 64] |= std::uint64_t{1} << (p % 64);
    else
        r.bits[p / 64] &= ~(std::uint64_t{1} << (p % 64));
}

// pid and ppid of one /proc entry; false for zombies, the dead and what vanished meanwhile.
REAPER_SIDE bool read_stat(int proc_dir, const char* name, int& pid, int& ppid)
{
    char path[32];
    std::size_t n = 0;
    pid = 0;
    for (; name[n] && n < 16; ++n) {
        if (name[n] < '0' || name[n] > '9')
            return false;
        path[n] = name[n];
        pid = pid * 10 + (name[n] - '0');
    }
    const char tail[] = "/stat";
    for (std::size_t i = 0; i < sizeof tail; ++i)
        path[n + i] = tail[i];
    long fd = sys::raw_syscall(SYS_openat, proc_dir, arg(path), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    // "pid (comm) S ppid ...": comm is at most 15 bytes (and may hold ')' or spaces).
    char buf[256];
    long len = sys::raw_syscall(SYS_read, fd, arg(buf), sizeof buf - 1);
    (void)sys::raw_syscall(SYS_close, fd);
    if (len <= 0)
        return false;
    long close = -1;
    for (long i = 0; i < len; ++i)
        if (buf[i] == ')')
            close = i;
    if (close < 0 || close + 4 >= len)
        return false;
    char state = buf[close + 2];
    if (state == 'Z' || state == 'X' || state == 'x')
        return false;
    ppid = 0;
    for (long i = close + 4; i < len && buf[i] >= '0' && buf[i] <= '9'; ++i)
        ppid = ppid * 10 + (buf[i] - '0');
    return true;
}

// Sends `sig` (and SIGCONT after it, unless it is SIGKILL) to every live descendant, found
// by ppid chains in one scan of /proc. Pids are allocated cyclically, so a pid that died and
// was reaped between the scan and the kill is not handed out again within a scan.
REAPER_SIDE void signal_tree(reaper_state& r, int sig)
{
    if (!map_buffers(r))
        return;
    long dir = sys::raw_syscall(SYS_openat, AT_FDCWD, arg("/proc"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return;
    std::size_t count = 0;
    for (;;) {
        long got = sys::raw_syscall(SYS_getdents64, dir, arg(r.dents), dirent_buffer);
        if (got <= 0)
            break;
        for (long off = 0; off < got;) {
            // struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name.
            auto* d = r.dents + off;
            unsigned short reclen;
            __builtin_memcpy(&reclen, d + 16, sizeof reclen);
            off += reclen;
            const char* name = d + 19;
            int pid, ppid;
            if (count < max_procs && name[0] >= '0' && name[0] <= '9' && read_stat(static_cast<int>(dir), name, pid, ppid))
                r.procs[count++] = {pid, ppid, 0};
        }
    }
    (void)sys::raw_syscall(SYS_close, dir);

    // Members: the closure over parent links from ourselves. /proc lists by pid, so after a
    // pid wrap a child may come before its parent: repeat until nothing is added.
    put_bit(r, r.self, true);
    for (bool grew = true; grew;) {
        grew = false;
        for (std::size_t i = 0; i < count; ++i)
            if (!r.procs[i].member && has_bit(r, r.procs[i].ppid)) {
                r.procs[i].member = 1;
                put_bit(r, r.procs[i].pid, true);
                grew = true;
            }
    }
    for (std::size_t i = 0; i < count; ++i) {
        if (!r.procs[i].member || r.procs[i].pid == r.self)
            continue;
        (void)sys::raw_syscall(SYS_kill, r.procs[i].pid, sig);
        if (sig != SIGKILL)
            (void)sys::raw_syscall(SYS_kill, r.procs[i].pid, SIGCONT);
    }
    for (std::size_t i = 0; i < count; ++i)
        if (r.procs[i].member)
            put_bit(r, r.procs[i].pid, false);
    put_bit(r, r.self, false);
}

// Reaps every child that exited, reporting the command's exit. False once there are no
// children left.
REAPER_SIDE bool reap(reaper_state& r)
{
    for (;;) {
        siginfo_t si;
        si.si_pid = 0;
        rusage ru;
        long x = sys::raw_syscall(SYS_waitid, P_ALL, 0, arg(&si), WEXITED | WNOHANG, arg(&ru));
        if (x == -EINTR)
            continue;
        if (x < 0)
            return false; // ECHILD
        if (si.si_pid == 0)
            return true;
        if (si.si_pid == r.main) {
            // What the command left running was re-parented to us before it could be reaped:
            // no child now means no tree (the usual case, told so the spawner need not look).
            siginfo_t other;
            other.si_pid = 0;
            long more = sys::raw_syscall(SYS_waitid, P_ALL, 0, arg(&other), WEXITED | WNOHANG | WNOWAIT, 0);
            int alone = more == -ECHILD ? 1 : 0;
            news n{news_exited, r.main, si.si_code, si.si_status, alone, ru};
            tell(r, n);
            (void)sys::raw_syscall(SYS_shutdown, r.ctl, SHUT_WR);
            r.main_done = true;
        }
    }
}

REAPER_SIDE void default_sigchld()
{
    // An ignored SIGCHLD (or SA_NOCLDWAIT) inherited from the spawner would reap our children
    // behind our back, and with them the command's exit status.
    sys::default_signal(SIGCHLD);
}

// Closes every descriptor but `keep` (three, any order; -1 for none).
REAPER_SIDE void close_all_but(int a, int b, int c)
{
    int k[3] = {a, b, c};
    for (int i = 0; i < 3; ++i)
        for (int j = i + 1; j < 3; ++j)
            if (k[j] < k[i]) {
                int t = k[i];
                k[i] = k[j];
                k[j] = t;
            }
    unsigned next = 0;
    for (int fd : k) {
        if (fd < 0)
            continue;
        if (static_cast<unsigned>(fd) > next)
            (void)sys::raw_syscall(SYS_close_range, next, fd - 1, 0);
        next = static_cast<unsigned>(fd) + 1;
    }
    (void)sys::raw_syscall(SYS_close_range, next, ~0U, 0);
}

[[noreturn]] REAPER_SIDE void reaper_main(void* argp, spawn_request::start_command_fn start, const void* plan) noexcept
{
    const auto* a = static_cast<const reaper_args*>(argp);
    reaper_state r;
    r.ctl = a->ctl;
    r.self = static_cast<pid_t>(sys::raw_syscall(SYS_getpid));

    // Only SIGKILL ends the reaper: the spawner's handlers must not run here, and a signal
    // meant for the spawner's process group must not make it drop the tree.
    std::uint64_t all = ~std::uint64_t{0};
    (void)sys::raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, arg(&all), 0, sizeof all);
    default_sigchld();
    // Its own process group (in the spawner's session, so the command can still be given the
    // terminal): a kill of the spawner's group does not reach it.
    (void)sys::raw_syscall(SYS_setpgid, 0, 0);

    news started{news_started, 0, 0, 0, 0, {}};
    long e = sys::raw_syscall(SYS_prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    std::uint64_t chld = std::uint64_t{1} << (SIGCHLD - 1);
    if (e == 0)
        e = r.sigfd = static_cast<int>(sys::raw_syscall(SYS_signalfd4, -1, arg(&chld), sizeof chld,
                                                       SFD_NONBLOCK | SFD_CLOEXEC));
    if (e < 0) {
        started.pid = static_cast<int>(e);
        tell(r, started);
        leave(1);
    }
    long sp = sys::raw_syscall(SYS_pidfd_open, a->spawner, 0);
    r.spawner = sp < 0 ? -1 : static_cast<int>(sp);
    // The spawner died before we could watch it: start nothing.
    if (sys::raw_syscall(SYS_getppid) != a->spawner)
        leave(0);

    started.pid = start(plan);
    tell(r, started);
    if (started.pid < 0)
        leave(1);
    r.main = started.pid;
    // The command holds what it needs; we hold only ours (a copy of the spawner's end of the
    // socket, kept here, would hide the spawner's death; stdio pipes would delay EOFs).
    close_all_but(r.ctl, r.sigfd, r.spawner);

    long backoff_ns = 1000000;
    for (;;) {
        bool children = reap(r);
        if (!children && r.main_done)
            leave(0);
        if (r.killing)
            signal_tree(r, SIGKILL);

        pollfd p[3];
        int n = 0, ictl = -1, ispawner = -1;
        p[n++] = {r.sigfd, POLLIN, 0};
        if (r.ctl_open) {
            ictl = n;
            p[n++] = {r.ctl, POLLIN, 0};
        }
        if (r.spawner >= 0) {
            ispawner = n;
            p[n++] = {r.spawner, POLLIN, 0};
        }
        // While killing, look again now and then: a killed process's children come to us only
        // once it is dead, and not every death is a SIGCHLD of ours.
        timespec ts{0, backoff_ns};
        long k = sys::raw_syscall(SYS_ppoll, arg(p), n, r.killing ? arg(&ts) : 0, 0, sizeof all);
        if (r.killing && backoff_ns < 16000000)
            backoff_ns *= 2;
        if (k <= 0)
            continue;
        if (p[0].revents) {
            signalfd_siginfo drain[8];
            while (sys::raw_syscall(SYS_read, r.sigfd, arg(drain), sizeof drain) > 0) {
            }
        }
        if (ictl >= 0 && p[ictl].revents) {
            order o{0, 0};
            long got = sys::raw_syscall(SYS_read, r.ctl, arg(&o), sizeof o);
            if (got == static_cast<long>(sizeof o)) {
                if (o.op == op_release)
                    leave(0);
                if (o.op == op_kill && !r.killing) {
                    r.killing = true;
                    backoff_ns = 1000000;
                }
                if (o.op == op_signal && o.sig > 0 && o.sig < 65)
                    signal_tree(r, o.sig);
            } else if (got != -EINTR && got != -EAGAIN) {
                // EOF: the spawner closed its end (it died, or exec'd) without letting go.
                r.ctl_open = false;
                r.killing = true;
            }
        }
        if (ispawner >= 0 && p[ispawner].revents) {
            (void)sys::raw_syscall(SYS_close, r.spawner);
            r.spawner = -1;
            r.killing = true;
        }
    }
}

// ---- the spawner's side -----------------------------------------------------------------

double millis(const timeval& t)
{
    return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_usec) / 1e3;
}

// main_process::wait for this method: the command's exit as the reaper reported it.
result<sys::wait_status> read_exit(int fd, bool peek)
{
    news n{};
    long got = sys::receive_message(fd, &n, sizeof n, false, peek);
    sys::wait_status ws;
    if (got == -EAGAIN || got == -EWOULDBLOCK)
        return ws; // still running
    if (got < 0)
        return error::from_errno(static_cast<int>(-got), "read the reaper's report");
    if (got != static_cast<long>(sizeof n) || n.kind != news_exited)
        return error::make(errc::still_populated,
                           "the reaper died before it reported the exit of the command; what the command "
                           "left running may have outlived it");
    ws.exited = true;
    ws.code = n.code;
    ws.status = n.status;
    ws.usage = n.usage;
    return ws;
}

class subreaper_tree final : public tree {
public:
    subreaper_tree(pid_t reaper, unique_fd pidfd, unique_fd ctl) noexcept
        : reaper_(reaper), pidfd_(std::move(pidfd)), ctl_(std::move(ctl))
    {
    }
    subreaper_tree(const subreaper_tree&) = delete;
    subreaper_tree& operator=(const subreaper_tree&) = delete;

    // Lets go of whatever is still running (kept orphans, a task that could not die in time):
    // the reaper exits and they go to init. A run that is not over was killed before this.
    ~subreaper_tree() override { let_go(); }

    [[nodiscard]] int ctl() const noexcept { return ctl_.get(); }

    result<bool> alive() override
    {
        if (reaped_ || empty_after_exit())
            return false;
        return sys::live_descendants(reaper_) > 0;
    }

    void signal(int sig) override
    {
        order o{op_signal, sig};
        (void)sys::send_message(ctl_.get(), &o, sizeof o);
    }

    result<std::string> kill() override
    {
        order o{op_kill, SIGKILL};
        // EPIPE: the reaper is gone, which it is only once the tree is empty (or it was killed).
        if (int e = sys::send_message(ctl_.get(), &o, sizeof o); e < 0 && e != -EPIPE && e != -ECONNRESET)
            return error::from_errno(-e, "tell the reaper " + std::to_string(reaper_) + " to kill");
        return mechanism();
    }

    [[nodiscard]] std::string mechanism() const override { return "subreaper"; }

    // The reaper exits once the command has exited and it has no children left.
    result<bool> wait_empty(deadline_t deadline) override
    {
        if (reaped_)
            return true;
        auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - sys::now());
        auto ready = sys::poll_one(pidfd_.get(), POLLIN, std::max(left, decltype(left)::zero()));
        if (!ready)
            return ready.error();
        return *ready != 0;
    }

    int remaining() override
    {
        if (reaped_)
            return 0;
        int n = empty_after_exit() ? 0 : sys::live_descendants(reaper_);
        if (n == 0)
            settle(1s); // nothing left: the reaper is on its way out; its rusage is the tree's
        return n;
    }

    // The tree's CPU time, once the reaper (which reaped all of it) has been reaped.
    void sample(usage& u) override
    {
        if (!exit_)
            return;
        cpu_times t{millis(exit_->usage.ru_utime), millis(exit_->usage.ru_stime)};
        if (t.user_ms + t.system_ms > u.cpu.user_ms + u.cpu.system_ms)
            u.cpu = t;
    }

    result<void> finish() override
    {
        if (!reaped_)
            settle(1s);
        if (!reaped_)
            return error::make(errc::still_populated, "the reaper " + std::to_string(reaper_) + " has not exited");
        if (!told_ && exit_ && !(exit_->code == CLD_EXITED && exit_->status == 0)) {
            told_ = true;
            return error::make(errc::still_populated,
                               "the reaper " + std::to_string(reaper_) + " died (" +
                                   (exit_->code == CLD_EXITED ? "status " + std::to_string(exit_->status)
                                                              : "signal " + std::to_string(exit_->status)) +
                                   "); what the command left running may have outlived it");
        }
        return {};
    }

    [[nodiscard]] bool holds_resources() const override { return !reaped_; }

    std::vector<pid_t> members() override
    {
        if (reaped_)
            return {};
        return sys::live_descendant_pids(reaper_);
    }

    // The reaper itself kills the tree when the spawner dies: nothing for the guard.
    [[nodiscard]] guard_target guard() const override { return {}; }

    // Kept orphans go to the caller now: the reaper lets go of them and exits.
    result<std::optional<std::string>> hand_over() override
    {
        let_go();
        return std::optional<std::string>();
    }

    void abandon() noexcept override { let_go(); }

    // For a placement that fails after the command started: the reaper reads EOF, kills the
    // tree and exits.
    void discard() noexcept
    {
        ctl_.reset();
        settle(5s);
        let_go();
    }

private:
    // Whether the reaper said, with the command's exit, that nothing else was left: then no
    // scan of /proc is needed. Peeks at the report (main_process reads it for good later);
    // once it has been read, false, and the caller scans.
    bool empty_after_exit() noexcept
    {
        if (!alone_ && ctl_) {
            news n{};
            if (sys::receive_message(ctl_.get(), &n, sizeof n, false, true) == static_cast<long>(sizeof n) &&
                n.kind == news_exited)
                alone_ = n.alone != 0;
        }
        return alone_;
    }

    // Waits up to `bound` for the reaper to exit, and reaps it.
    void settle(std::chrono::milliseconds bound) noexcept
    {
        if (reaped_)
            return;
        auto ready = sys::poll_one(pidfd_.get(), POLLIN, bound);
        if (!ready || *ready == 0)
            return;
        auto ws = sys::wait_pidfd(pidfd_.get(), false);
        if (ws && ws->exited) {
            exit_ = *ws;
            reaped_ = true;
            pidfd_.reset();
        }
    }

    void let_go() noexcept
    {
        if (reaped_ || !pidfd_)
            return;
        order o{op_release, 0};
        (void)sys::send_message(ctl_.get(), &o, sizeof o);
        ctl_.reset();
        settle(1s);
        if (!reaped_) {
            (void)sys::pidfd_send_signal(pidfd_.get(), SIGKILL);
            sys::reap_pidfd(pidfd_.get());
            reaped_ = true;
            pidfd_.reset();
        }
    }

    pid_t reaper_;
    unique_fd pidfd_;
    unique_fd ctl_;
    bool reaped_ = false;
    bool told_ = false;
    bool alone_ = false;
    std::optional<sys::wait_status> exit_;
};

} // namespace

result<placed> place_in_subreaper(const place_request& r)
{
    if (auto refused = needs_cgroup(r, "subreaper"))
        return *refused;
    auto pair = sys::make_seqpacket_pair();
    if (!pair)
        return pair.error();
    reaper_args args{::getpid(), pair->write.get()};
    auto req = launch_request(r.opts);
    req.via = reaper_main;
    req.via_arg = &args;
    auto sp = start_process(std::move(req));
    pair->write.reset(); // the reaper's end: only the reaper holds it now
    if (!sp)
        return sp.error();
    auto t = std::make_unique<subreaper_tree>(sp->pid, sp->pidfd.release(), std::move(pair->read));

    // The reaper answers once it has started the command (and, sharing its memory, the command
    // has exec'd or failed to). A failure here lets the reaper go before anything ran.
    news n{};
    long got = sys::receive_message(t->ctl(), &n, sizeof n, true, false);
    if (got != static_cast<long>(sizeof n) || n.kind != news_started)
        return error::make(errc::spawn_failed, "the reaper of " + r.opts.argv[0] + " died before it started it");
    if (n.pid < 0)
        return error::from_errno(-n.pid, "start " + r.opts.argv[0] + " in its reaper");
    int exit_fd = ::fcntl(t->ctl(), F_DUPFD_CLOEXEC, 3);
    if (exit_fd < 0) {
        int err = errno;
        t->discard();
        return error::from_errno(err, "dup the reaper's socket");
    }
    placed p;
    p.process = std::move(*sp);
    p.process.pid = n.pid;
    // Not a pidfd: the socket on which the reaper reports the exit (read by read_exit).
    p.process.pidfd = reaping_pidfd{unique_fd{exit_fd}};
    p.held = std::move(t);
    r.main->wait = read_exit;
    return p;
}

} // namespace cgrun::detail
