#pragma once

// A tree held by one cgroup v2 directory: the cgroup method's tree, which the scope method's
// extends (method_cgroup.cpp, method_scope.cpp).

#include "tree.hpp"

namespace cgrun::detail {

class cgroup_tree : public tree {
public:
    explicit cgroup_tree(cgroup_dir cg) : cg_(std::move(cg)) {}

    result<bool> alive() override;
    void signal(int sig) override;
    result<std::string> kill() override;
    [[nodiscard]] std::string mechanism() const override;
    result<bool> wait_empty(deadline_t deadline) override;
    int remaining() override;
    std::vector<pid_t> members() override;
    void sample(usage& u) override;
    // usage_usec of the cgroup's cpu.stat (there without any controller).
    std::optional<std::chrono::microseconds> cpu_usage() override;
    unique_fd open_memory_events() override;
    // Removes the leaf (and any sub-cgroups the payload made).
    result<void> finish() override;
    [[nodiscard]] bool holds_resources() const override { return cg_.valid(); }
    void abandon() noexcept override { cg_.release(); }
    // Marks the leaf kept (xattr user.cgrun.kept): the sweep of a later spawn then removes it
    // once it is empty instead of killing what it holds. (cgroup2 refuses to rename.)
    result<std::optional<std::string>> hand_over() override;
    // The leaf is ours to remove.
    [[nodiscard]] guard_target guard() const override;

protected:
    cgroup_dir cg_;

private:
    bool sampled_empty_ = false; // sample() has read the figures of the emptied cgroup
};

} // namespace cgrun::detail
