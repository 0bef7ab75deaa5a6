#pragma once

// Helpers for tests against real processes, cgroups and systemd.

#include <cgrun/cgrun.hpp>

#include <optional>
#include <string>
#include <vector>

namespace cgrun::test {

// The method under test: CGRUN_TEST_METHOD = cgroup | pgroup | scope | subreaper.
method method_under_test();
// Whether it holds the tree in a cgroup (scope, cgroup).
bool in_cgroup();
// Whether the method under test reaches setsid escapees (all but pgroup).
bool escape_proof();
// Why this suite cannot run here (it then exits 77), or nullopt.
std::optional<std::string> missing_precondition();

// A fresh temporary directory, removed with its files on destruction.
class temp_dir {
public:
    temp_dir();
    ~temp_dir();
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

// Pids written one per line into `file`; waits (bounded) until at least `n` are there.
std::vector<int> wait_for_pids(const std::string& file, size_t n, int timeout_ms = 5000);
// Alive and not a zombie.
bool alive(int pid);
// Waits (bounded) until pid is gone; true if it is.
bool wait_gone(int pid, int timeout_ms = 3000);
// After a kill: true once pid is gone or a zombie, waiting at most 1 s. The kernel reports
// `populated 0` when a dying task leaves its cgroup (cgroup_exit), after it has dropped its memory
// and files but just before exit_notify turns it into a zombie; /proc can show it as 'R' for that
// moment, longer on a loaded machine. A process that survived the kill fails this.
bool exited(int pid);
// State letter from /proc/<pid>/stat ('R', 'S', 'T', 'Z'...), 0 if gone.
char proc_state(int pid);
// cgroup2 path of a process ("/..."), empty if gone.
std::string proc_cgroup(int pid);
// All descendants of pid (by ppid chains in /proc).
std::vector<int> descendants(int pid);
// Number of fds of this process.
int open_fd_count();
// Children of a cgroup (path inside the hierarchy) made by this process ("cgrun-<pid>-*").
std::vector<std::string> cgrun_cgroups_under(const std::string& parent);
std::string cgroup2_mount();
std::string own_cgroup();
// Kills a cgroup (path inside the hierarchy) and removes it: cleanup for keep_orphans tests.
void destroy_cgroup(const std::string& path);
// Whether a unit is still loaded in the system manager (via busctl).
bool unit_loaded(const std::string& unit);
// A property of a unit of the system manager (systemctl show --value), "" if unknown.
std::string unit_property(const std::string& unit, const std::string& name);
// Units of the system manager whose name starts with "cgrun-", loaded in any state.
int cgrun_units();
// The xattr by which systemd marked our own cgroup delegated ("trusted.delegate" first,
// then "user.delegate", with the value "1"), or nullopt.
std::optional<std::string> own_delegation_marker();
// Removes systemd's delegation markers from our own cgroup and puts them back on destruction:
// makes a Delegate=yes unit look like one without it to auto (systemd never reads them).
class undelegated {
public:
    undelegated();
    ~undelegated();
    undelegated(const undelegated&) = delete;
    undelegated& operator=(const undelegated&) = delete;

private:
    std::string dir_;
    std::vector<std::pair<std::string, std::string>> removed_;
};
// Kills what a test left running (best effort).
void kill_all(const std::vector<int>& pids);

options base_options(std::vector<std::string> argv);

} // namespace cgrun::test
