// The pgroup method: the child leads a process group of its own and nothing more. It
// cannot reach processes that leave the group (setsid, double fork into another group).

#include "tree.hpp"

#include <atomic>

namespace cgrun::detail {

using namespace std::chrono_literals;

namespace {

// PIDFD_SIGNAL_PROCESS_GROUP (Linux 6.9) names the group by the leader's pidfd, which stays
// right after the leader is reaped; before 6.9 the group is signalled by number, so the
// leader is kept a zombie (main_process::collect with peek) to keep that number ours.
bool group_pidfd_signals(int pidfd)
{
    static std::atomic<int> known{-1};
    int k = known.load();
    if (k >= 0)
        return k == 1;
    bool ok = sys::pidfd_signal_group(pidfd, 0) != -EINVAL;
    known.store(ok ? 1 : 0);
    return ok;
}

class pgroup_tree final : public tree {
public:
    explicit pgroup_tree(main_process* main) : main_(main) {}

    result<bool> alive() override
    {
        if (group_pidfd_signals(main_->pidfd.get())) {
            // Reap the leader first if it exited, then probe the group.
            if (auto r = main_->collect(false); !r)
                return r.error();
            if (sys::pidfd_signal_group(main_->pidfd.get(), 0) != 0)
                return false;
            // The group still has members, but killed ones stay zombies until their new parent
            // (init or a subreaper) reaps them, which some inits do only now and then.
            return sys::group_members(main_->pid) > 0;
        }
        if (auto r = main_->collect(true); !r)
            return r.error();
        return sys::group_members(main_->pid) > 0;
    }

    void signal(int sig) override
    {
        if (group_pidfd_signals(main_->pidfd.get())) {
            (void)sys::pidfd_signal_group(main_->pidfd.get(), sig);
            if (sig != SIGKILL)
                (void)sys::pidfd_signal_group(main_->pidfd.get(), SIGCONT);
        } else if (!main_->reaped) {
            (void)sys::kill_group(main_->pid, sig);
            if (sig != SIGKILL)
                (void)sys::kill_group(main_->pid, SIGCONT);
        }
    }

    result<std::string> kill() override
    {
        signal(SIGKILL);
        return mechanism();
    }

    [[nodiscard]] std::string mechanism() const override { return "killpg"; }

    result<bool> wait_empty(deadline_t deadline) override
    {
        for (auto step = 50us;; step = std::min<std::chrono::microseconds>(step * 2, 5ms)) {
            auto a = alive();
            if (!a)
                return a.error();
            if (!*a)
                return true;
            if (sys::now() >= deadline)
                return false;
            sys::sleep_for(step);
        }
    }

    int remaining() override
    {
        if (group_pidfd_signals(main_->pidfd.get()) && sys::pidfd_signal_group(main_->pidfd.get(), 0) != 0)
            return 0;
        return sys::group_members(main_->pid);
    }

    std::vector<pid_t> members() override { return sys::group_pids(main_->pid); }

    [[nodiscard]] guard_target guard() const override
    {
        guard_target g;
        g.pidfd = main_->pidfd.get();
        g.pgid = main_->pid;
        return g;
    }

    // Only the main process's rusage is known (make_report takes it from its exit status).
    void sample(usage&) override {}

private:
    main_process* main_;
};

} // namespace

result<placed> place_in_pgroup(const place_request& r)
{
    if (auto refused = needs_cgroup(r, "pgroup"))
        return *refused;
    auto sp = start_process(launch_request(r.opts));
    if (!sp)
        return sp.error();
    placed p;
    p.process = std::move(*sp);
    p.held = std::make_unique<pgroup_tree>(r.main);
    return p;
}

} // namespace cgrun::detail
