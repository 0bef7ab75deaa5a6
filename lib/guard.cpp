// The spawner-death guard: the spawner side (start it, register and drop trees over a
// socket) and the guard process's own loop, which makes its system calls directly (it runs
// after fork() of a possibly multi-threaded spawner: no allocation, no locks).

#include "guard.hpp"

#include "sys.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <algorithm>
#include <cstring>
#include <mutex>

namespace cgrun::detail {

namespace {

enum : std::uint32_t { op_add = 1, op_drop = 2 };
enum : std::uint32_t { has_cgroup = 1, has_pidfd = 2, remove_leaf = 4 };

constexpr std::uint32_t max_deferred = 8;

// One message on the SOCK_SEQPACKET socket; the fds travel as SCM_RIGHTS (cgroup dir first).
// `dropped`: trees that are gone (leaf removed), whose drop waited for this message.
struct message {
    std::uint32_t op;
    std::uint32_t flags;
    std::uint64_t id;
    std::int32_t pgid;
    char leaf[64];
    std::uint32_t ndropped;
    std::uint64_t dropped[max_deferred];
};

// ---- the guard process -------------------------------------------------------------------

struct entry {
    std::uint64_t id;
    int cgroup_fd;
    int pidfd;
    std::int32_t pgid;
    std::uint32_t flags;
    char leaf[64];
};

constexpr std::size_t max_entries = 1 << 16; // 6 MiB of address space, touched as used
constexpr unsigned pidfd_signal_process_group = 1U << 2;

struct guard_table {
    entry* e = nullptr;
    std::size_t n = 0;
};

void close_quietly(int fd)
{
    if (fd >= 0)
        (void)::close(fd);
}

void forget(guard_table& t, std::uint64_t id)
{
    for (std::size_t i = 0; i < t.n; ++i)
        if (t.e[i].id == id) {
            close_quietly(t.e[i].cgroup_fd);
            close_quietly(t.e[i].pidfd);
            t.e[i] = t.e[--t.n];
            return;
        }
}

// Reads every message queued; returns how many there were.
std::size_t receive(int sock, guard_table& t, bool& eof)
{
    for (std::size_t got = 0;; ++got) {
        message m{};
        alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))];
        iovec iov{&m, sizeof m};
        msghdr h{};
        h.msg_iov = &iov;
        h.msg_iovlen = 1;
        h.msg_control = control;
        h.msg_controllen = sizeof control;
        ssize_t r = ::recvmsg(sock, &h, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        // ECONNRESET: the spawner closed its end with data of ours unread. The error comes
        // once, before what it sent is read: read on.
        if (r < 0 && (errno == EINTR || errno == ECONNRESET)) {
            --got;
            continue;
        }
        if (r < 0)
            return got; // EAGAIN: drained
        if (r == 0) {
            eof = true;
            return got;
        }
        int fds[2] = {-1, -1};
        int nfds = 0;
        for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                nfds = static_cast<int>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                std::memcpy(fds, CMSG_DATA(c), static_cast<std::size_t>(std::min(nfds, 2)) * sizeof(int));
            }
        if (m.op == op_add && t.n < max_entries) {
            entry& e = t.e[t.n++];
            e.id = m.id;
            e.flags = m.flags;
            e.pgid = m.pgid;
            int next = 0;
            e.cgroup_fd = (m.flags & has_cgroup) ? fds[next++] : -1;
            e.pidfd = (m.flags & has_pidfd) ? fds[next++] : -1;
            std::memcpy(e.leaf, m.leaf, sizeof e.leaf);
            e.leaf[sizeof e.leaf - 1] = 0;
        } else {
            close_quietly(fds[0]);
            close_quietly(fds[1]);
            forget(t, m.id);
        }
        for (std::uint32_t i = 0; i < std::min(m.ndropped, max_deferred); ++i)
            forget(t, m.dropped[i]);
    }
}

// Is the cgroup at `dirfd` populated? A removed one is not.
bool populated(int dirfd)
{
    int fd = ::openat(dirfd, "cgroup.events", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[256];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0)
        return false;
    buf[n] = 0;
    return std::strstr(buf, "populated 1") != nullptr;
}

// SIGKILL each pid in cgroup.procs of `dirfd` (kernels before 5.14 have no cgroup.kill).
void kill_listed(int dirfd)
{
    int fd = ::openat(dirfd, "cgroup.procs", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[4096];
    long pid = 0;
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; ++i) {
            if (buf[i] >= '0' && buf[i] <= '9') {
                pid = pid * 10 + (buf[i] - '0');
            } else {
                if (pid > 0)
                    (void)::kill(static_cast<pid_t>(pid), SIGKILL);
                pid = 0;
            }
        }
    ::close(fd);
}

void kill_tree(const entry& e)
{
    if (e.cgroup_fd >= 0) {
        int fd = ::openat(e.cgroup_fd, "cgroup.kill", O_WRONLY | O_CLOEXEC);
        bool done = fd >= 0 && ::write(fd, "1", 1) == 1;
        close_quietly(fd);
        if (!done)
            kill_listed(e.cgroup_fd);
    }
    if (e.pidfd >= 0 &&
        ::syscall(SYS_pidfd_send_signal, e.pidfd, SIGKILL, nullptr, pidfd_signal_process_group) != 0) {
        // Before 6.9, or the leader is gone: by number. A process group id is not reused while
        // the group has members; once it has none the kill finds nobody (see child.hpp).
        if (e.pgid > 1)
            (void)::kill(-e.pgid, SIGKILL);
    }
}

// Removes `name` below `parent_fd`, with the sub-cgroups the payload made.
void remove_cgroup(int parent_fd, const char* name, int depth)
{
    for (int attempt = 0; attempt < 200; ++attempt) {
        if (::unlinkat(parent_fd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
            return;
        if (errno != EBUSY && errno != ENOTEMPTY)
            return;
        int fd = ::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0 && depth < 32) {
            alignas(8) char buf[4096];
            long n;
            while ((n = ::syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
                for (long off = 0; off < n;) {
                    auto* d = reinterpret_cast<dirent64*>(buf + off);
                    if (d->d_type == DT_DIR && std::strcmp(d->d_name, ".") != 0 && std::strcmp(d->d_name, "..") != 0)
                        remove_cgroup(fd, d->d_name, depth + 1);
                    off += d->d_reclen;
                }
        }
        close_quietly(fd);
        ::usleep(5000); // dying tasks still detaching
    }
}

// Kills every tree still registered, waits (bounded) until they are empty, removes our leaves.
void kill_all(guard_table& t)
{
    for (std::size_t i = 0; i < t.n; ++i)
        kill_tree(t.e[i]);
    for (int round = 0; round < 400; ++round) { // 2 s
        bool any = false;
        for (std::size_t i = 0; i < t.n; ++i)
            if (t.e[i].cgroup_fd >= 0 && populated(t.e[i].cgroup_fd)) {
                any = true;
                if (round % 20 == 19)
                    kill_tree(t.e[i]); // a task forked while the kill was under way
            }
        if (!any)
            break;
        ::usleep(5000);
    }
    for (std::size_t i = 0; i < t.n; ++i) {
        const entry& e = t.e[i];
        if (!(e.flags & remove_leaf) || e.cgroup_fd < 0 || !e.leaf[0])
            continue;
        int parent = ::openat(e.cgroup_fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (parent >= 0) {
            remove_cgroup(parent, e.leaf, 0);
            ::close(parent);
        }
    }
}

// Not instrumented: it runs on the copy of the intermediate's stack, where ASan's
// __asan_handle_no_return before _exit() would warn on the inherited stderr.
[[noreturn]] __attribute__((no_sanitize("address"))) void guard_main(int sock, int spawner_pidfd)
{
    // Outside the spawner's session and process group: a kill of those must not reach us.
    (void)::setsid();
    (void)::chdir("/");
    sigset_t all;
    sigfillset(&all);
    (void)::sigprocmask(SIG_SETMASK, &all, nullptr);
    (void)::prctl(PR_SET_NAME, "cgrun-guard", 0, 0, 0);
    // Every descriptor of the spawner's but our two (a pipe end kept here would delay
    // someone's EOF; a cgroup or bus fd would be a leak).
    int lo = std::min(sock, spawner_pidfd), hi = std::max(sock, spawner_pidfd);
    (void)::syscall(SYS_close_range, 3U, static_cast<unsigned>(lo) - 1, 0U);
    (void)::syscall(SYS_close_range, static_cast<unsigned>(lo) + 1, static_cast<unsigned>(hi) - 1, 0U);
    (void)::syscall(SYS_close_range, static_cast<unsigned>(hi) + 1, ~0U, 0U);

    guard_table t;
    void* mem = ::mmap(nullptr, max_entries * sizeof(entry), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        ::_exit(1);
    t.e = static_cast<entry*>(mem);

    bool eof = false;
    // While the spawner spawns, a wake-up per message would cost it a context switch per
    // child (27 us of a 0.7 ms run on a busy 2-CPU machine): then messages are read in
    // batches every 5 ms instead, and only the spawner's death wakes us at once. Idle, the
    // first message wakes us. Messages wait safely in the socket, their fds with them, and
    // an EOF (the spawner exec'd) is seen at the next batch.
    bool busy = false;
    for (;;) {
        pollfd p[2] = {{busy ? -1 : sock, POLLIN, 0}, {spawner_pidfd, POLLIN, 0}};
        int r = ::poll(p, 2, busy ? 5 : -1);
        if (r < 0 && errno != EINTR)
            break;
        busy = receive(sock, t, eof) > 0;
        // The spawner died (its pidfd), exec'd or closed every copy of its end (EOF): what it
        // registered before is in the socket already, and was received above.
        if (eof || (p[1].revents & POLLIN))
            break;
    }
    kill_all(t);
    ::_exit(0);
}

// ---- the intermediate --------------------------------------------------------------------

// What the intermediate reads, kept at the low end of its stack mapping: it lives until the
// intermediate is reaped, whatever the spawner does meanwhile.
struct intermediate_args {
    int sock;
    int spawner_pidfd;
    int pid_pipe;
};

constexpr std::size_t intermediate_stack_size = 256 * 1024; // guard_main runs on its copy

// Runs on our memory (CLONE_VM) while we go on: raw system calls only. The guard it forks
// gets a copy of that memory, its stack included, and lives on it.
[[noreturn]] __attribute__((no_sanitize("address", "undefined"))) void intermediate_main(void* p)
{
    const intermediate_args a = *static_cast<const intermediate_args*>(p);
    long g = sys::raw_syscall(SYS_fork);
    if (g == 0)
        guard_main(a.sock, a.spawner_pidfd);
    if (g > 0) {
        // The guard is not ours to see in /proc/PID/task/*/children: say who it is (a pipe
        // write of 4 bytes is atomic).
        pid_t pid = static_cast<pid_t>(g);
        (void)sys::raw_syscall(SYS_write, a.pid_pipe, reinterpret_cast<long>(&pid), sizeof pid);
    }
    for (;;)
        (void)sys::raw_syscall(SYS_exit_group, g > 0 ? 0 : 1);
}

// ---- the spawner side --------------------------------------------------------------------

struct connection {
    std::mutex mutex;
    int sock = -1;
    pid_t owner = -1; // the process the socket belongs to; another one (a fork) starts anew
    unique_fd intermediate;    // pidfd of the process that forked the guard, until reaped
    void* intermediate_stack = nullptr; // its stack in our memory, unmapped once it is reaped
    unique_fd pid_pipe;        // where the intermediate writes the guard's pid, until read
    pid_t guard = -1;          // the guard's pid, once read from pid_pipe
    std::atomic<std::uint64_t> next_id{0};
    // Drops of trees that are gone, sent along with the next message (one system call and
    // one wake-up of the guard less per run). Only trees the guard kills through their
    // cgroup fd: a removed cgroup cannot be reused, a process group number can.
    std::uint32_t ndeferred = 0;
    std::uint64_t deferred[max_deferred];
};

// Moves the deferred drops into `m`.
void attach_deferred(connection& c, message& m)
{
    m.ndropped = c.ndeferred;
    std::copy_n(c.deferred, c.ndeferred, m.dropped);
    c.ndeferred = 0;
}

void reap_intermediate(connection& c)
{
    if (!c.intermediate)
        return;
    auto w = sys::wait_pidfd(c.intermediate.get(), false);
    if (!w || w->exited) {
        c.intermediate.reset();
        if (c.intermediate_stack && w)
            ::munmap(c.intermediate_stack, intermediate_stack_size);
        c.intermediate_stack = nullptr; // (not known to be gone: leaked rather than pulled away)
    }
}

connection& conn()
{
    static connection* c = new connection; // never destroyed: tickets may drop at exit
    return *c;
}

result<void> start_guard(connection& c)
{
    auto self = sys::pidfd_open(::getpid());
    if (!self)
        return error::make(errc::spawn_failed, "spawner-death guard: " + self.error().message());
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return error::make(errc::spawn_failed,
                           std::string("spawner-death guard: socketpair: ") + std::strerror(errno));
    unique_fd mine(sv[0]), theirs(sv[1]);
    auto pid_pipe = sys::make_pipe();
    if (!pid_pipe)
        return error::make(errc::spawn_failed, "spawner-death guard: " + pid_pipe.error().message());
    // A grandchild: the intermediate exits at once (and is reaped by our next call), so the
    // guard is never our child: no zombie and no SIGCHLD of ours when it ends.
    int mid_pidfd = -1;
    // Forked with every signal blocked (this thread's mask, restored below): a signal that
    // reached the guard before guard_main() blocks them would run the spawner's handler in
    // the guard (seen: systemd's SIGTERM to a unit whose main process had just exited made
    // a test's doctest handler print a second summary from the guard). The raw call blocks
    // glibc's internal signals too.
    //
    // The intermediate shares our memory where it can (as a CLONE_VM clone on a stack of its
    // own): then only the guard's fork copies our page tables, on its time, not ours (a fork
    // of the cgrun tool costs it about 0.1 ms, a tenth of its run of `true`).
    if (c.intermediate) {
        // A previous intermediate (its guard died at once): it exits within microseconds.
        sys::reap_pidfd(c.intermediate.get());
        c.intermediate.reset();
        if (c.intermediate_stack)
            ::munmap(c.intermediate_stack, intermediate_stack_size);
        c.intermediate_stack = nullptr;
    }
    void* stack = nullptr;
    if (sys::have_shared_vm_clone()) {
        stack = ::mmap(nullptr, intermediate_stack_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
        if (stack == MAP_FAILED)
            stack = nullptr;
    }
    pid_t mid = -ENOSYS;
    if (stack) {
        *static_cast<intermediate_args*>(stack) = {theirs.get(), self->get(), pid_pipe->write.get()};
        // clone3_shared_vm blocks every signal around the call.
        mid = sys::clone3_shared_vm(CLONE_PIDFD, &mid_pidfd, -1, stack, intermediate_stack_size, intermediate_main,
                                    stack);
        if (mid < 0) {
            ::munmap(stack, intermediate_stack_size);
            stack = nullptr;
        }
    }
    if (!stack) {
        std::uint64_t all = ~std::uint64_t{0}, old = 0;
        (void)sys::raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&all),
                               reinterpret_cast<long>(&old), sizeof all);
        mid = sys::clone3_fork(CLONE_PIDFD, &mid_pidfd, -1);
        if (mid != 0)
            (void)sys::raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&old), 0, sizeof old);
        if (mid == 0) {
            intermediate_args a{theirs.get(), self->get(), pid_pipe->write.get()};
            intermediate_main(&a);
        }
    }
    if (mid < 0)
        return error::make(errc::spawn_failed, std::string("spawner-death guard: clone3: ") + std::strerror(-mid));
    // Not waited for here: the intermediate is reaped at the next call (reap_intermediate),
    // and the guard reads what we send whenever it gets to run. A guard that never came up
    // shows as a failed send.
    c.intermediate = unique_fd(mid_pidfd);
    c.intermediate_stack = stack;
    c.pid_pipe = std::move(pid_pipe->read);
    c.guard = -1;
    // Only we send: a message of the guard's left unread when we exit would make the kernel
    // report ECONNRESET to it ahead of our last messages.
    (void)::shutdown(mine.get(), SHUT_RD);
    if (c.sock >= 0)
        (void)::close(c.sock);
    c.sock = mine.release();
    c.ndeferred = 0; // they were the old guard's (a fork, or a guard that died)
    c.owner = ::getpid();
    return {};
}

result<void> send(connection& c, const message& m, const int* fds, int nfds)
{
    iovec iov{const_cast<message*>(&m), sizeof m};
    msghdr h{};
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))]{};
    if (nfds > 0) {
        h.msg_control = control;
        h.msg_controllen = CMSG_SPACE(static_cast<std::size_t>(nfds) * sizeof(int));
        cmsghdr* cm = CMSG_FIRSTHDR(&h);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(static_cast<std::size_t>(nfds) * sizeof(int));
        std::memcpy(CMSG_DATA(cm), fds, static_cast<std::size_t>(nfds) * sizeof(int));
    }
    ssize_t r;
    do
        r = ::sendmsg(c.sock, &h, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return error::from_errno(errno, "send to the spawner-death guard");
    return {};
}

} // namespace

result<void> guard_ready()
{
    auto& c = conn();
    std::lock_guard lock(c.mutex);
    reap_intermediate(c);
    if (c.owner == ::getpid())
        return {};
    return start_guard(c);
}

result<pid_t> guard_pid()
{
    auto& c = conn();
    std::lock_guard lock(c.mutex);
    reap_intermediate(c);
    if (c.owner == ::getpid()) {
        // Asked for to start a scope with it: a guard that was killed is replaced, or systemd
        // would refuse its pid. An empty message finds out (its socket end is closed then).
        message m{};
        m.op = op_drop;
        attach_deferred(c, m);
        if (!send(c, m, nullptr, 0))
            c.owner = -1;
    }
    if (c.owner != ::getpid())
        if (auto r = start_guard(c); !r)
            return r.error();
    if (c.guard > 0)
        return c.guard;
    // Written by the intermediate right after its fork: a moment at most.
    pid_t g = -1;
    auto ready = sys::poll_one(c.pid_pipe.get(), POLLIN, std::chrono::seconds(5));
    if (ready && *ready != 0 && ::read(c.pid_pipe.get(), &g, sizeof g) == static_cast<ssize_t>(sizeof g) && g > 0) {
        c.guard = g;
        c.pid_pipe.reset();
        return g;
    }
    return error::make(errc::spawn_failed, "spawner-death guard: its pid was not reported");
}

result<guard_ticket> guard_tree(const guard_target& t)
{
    if (t.cgroup_fd < 0 && t.pidfd < 0)
        return guard_ticket(); // the method needs no guard
    auto& c = conn();
    std::lock_guard lock(c.mutex);
    message m{};
    m.op = op_add;
    m.id = ++c.next_id;
    m.pgid = t.pgid;
    int fds[2];
    int nfds = 0;
    if (t.cgroup_fd >= 0) {
        m.flags |= has_cgroup;
        fds[nfds++] = t.cgroup_fd;
    }
    if (t.pidfd >= 0) {
        m.flags |= has_pidfd;
        fds[nfds++] = t.pidfd;
    }
    if (!t.leaf.empty() && t.leaf.size() < sizeof m.leaf) {
        m.flags |= remove_leaf;
        std::memcpy(m.leaf, t.leaf.c_str(), t.leaf.size() + 1);
    }
    if (c.owner == ::getpid())
        attach_deferred(c, m);
    // Twice at most: a guard that died (someone killed it) is replaced once.
    reap_intermediate(c);
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (c.owner != ::getpid())
            if (auto r = start_guard(c); !r)
                return r.error();
        if (send(c, m, fds, nfds))
            return guard_ticket(m.id, t.pidfd < 0);
        c.owner = -1;
    }
    return error::make(errc::spawn_failed, "spawner-death guard: it does not answer");
}

void guard_ticket::drop(bool tree_gone) noexcept
{
    if (!id_)
        return;
    auto& c = conn();
    std::lock_guard lock(c.mutex);
    reap_intermediate(c);
    if (c.owner == ::getpid()) {
        if (tree_gone && deferrable_ && c.ndeferred < max_deferred) {
            c.deferred[c.ndeferred++] = id_;
        } else {
            message m{};
            m.op = op_drop;
            m.id = id_;
            attach_deferred(c, m);
            (void)send(c, m, nullptr, 0);
        }
        if (c.ndeferred == max_deferred) {
            message m{};
            m.op = op_drop;
            attach_deferred(c, m);
            (void)send(c, m, nullptr, 0);
        }
    }
    id_ = 0;
}

} // namespace cgrun::detail
