#pragma once

// The spawner-death guard: one small process per spawning process that kills the trees the
// spawner still owns when the spawner dies by any means (SIGKILL, crash, OOM kill, exec).

#include <cgrun/error.hpp>

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace cgrun::detail {

// What the guard needs to kill one tree without the spawner.
struct guard_target {
    int cgroup_fd = -1;  // the tree's cgroup directory: its cgroup.kill is written
    std::string leaf;    // removed below the cgroup's parent after the kill; empty: not ours to remove
    int pidfd = -1;      // no cgroup: the main process, whose process group is SIGKILLed
    pid_t pgid = -1;
};

// A tree registered with the guard; dropping it tells the guard to forget the tree (it is
// finished, or handed to the caller).
class guard_ticket {
public:
    guard_ticket() = default;
    guard_ticket(std::uint64_t id, bool deferrable) noexcept : id_(id), deferrable_(deferrable) {}
    guard_ticket(guard_ticket&& o) noexcept : id_(o.id_), deferrable_(o.deferrable_) { o.id_ = 0; }
    guard_ticket& operator=(guard_ticket&& o) noexcept
    {
        if (this != &o) {
            drop();
            id_ = o.id_;
            deferrable_ = o.deferrable_;
            o.id_ = 0;
        }
        return *this;
    }
    ~guard_ticket() { drop(); }
    // `tree_gone`: the tree is dead and its cgroup removed, so the guard may learn it with
    // the next message (a tree kept for the caller must be dropped at once).
    void drop(bool tree_gone = false) noexcept;
    [[nodiscard]] bool held() const noexcept { return id_ != 0; }

private:
    std::uint64_t id_ = 0;
    bool deferrable_ = false; // killed by its cgroup fd, not by a process group number
};

// Starts this process's guard if it has none (first use, or a fork), so that registering a
// tree right after its command started is one message, not a fork.
result<void> guard_ready();

// The pid of this process's guard, starting it if it has none (the per-spawner delegated
// scope holds it in a sub-leaf). errc::spawn_failed when it cannot be had.
result<pid_t> guard_pid();

// Registers a tree with this process's guard, starting the guard on first use (and anew in
// a process forked from one that had a guard). errc::spawn_failed when it cannot be had.
result<guard_ticket> guard_tree(const guard_target& t);

} // namespace cgrun::detail
