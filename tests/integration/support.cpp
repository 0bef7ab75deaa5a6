#include "support.hpp"

#include "cgroup_path.hpp"
#include "setup.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace cgrun::test {

namespace {
std::string slurp(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}
} // namespace

method method_under_test()
{
    const char* m = std::getenv("CGRUN_TEST_METHOD");
    auto parsed = method_from_string(m ? m : "cgroup");
    return parsed ? *parsed : method::cgroup;
}

bool escape_proof()
{
    return method_under_test() != method::pgroup;
}

bool in_cgroup()
{
    auto m = method_under_test();
    return m == method::scope || m == method::cgroup;
}

std::string cgroup2_mount()
{
    auto m = detail::cgroup2_mount(slurp("/proc/self/mountinfo"));
    return m ? *m : "";
}

std::string own_cgroup()
{
    auto c = detail::unified_cgroup(slurp("/proc/self/cgroup"));
    return c ? *c : "";
}

std::optional<std::string> missing_precondition()
{
    auto m = method_under_test();
    if (std::getenv("CGRUN_TEST_NEEDS_V1_FREEZER") && ::access("/sys/fs/cgroup/freezer/tasks", F_OK) != 0)
        return "no cgroup v1 freezer (needed to make a task that cannot die)";
    if (m == method::pgroup || m == method::subreaper)
        return std::nullopt; // no cgroup: runs as any user, anywhere
    if (::geteuid() != 0)
        return "needs root to create cgroups";
    if (cgroup2_mount().empty())
        return "no cgroup2 mount";
    if (m == method::scope) {
        if (::access("/run/systemd/system", F_OK) != 0)
            return "no systemd manager here (run under tests/with-systemd.sh)";
    }
    return std::nullopt;
}

temp_dir::temp_dir()
{
    char tmpl[] = "/tmp/cgrun-test-XXXXXX";
    char* p = ::mkdtemp(tmpl);
    path_ = p ? p : "/tmp";
    ::chmod(path_.c_str(), 0755);
}

temp_dir::~temp_dir()
{
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

std::vector<int> wait_for_pids(const std::string& file, size_t n, int timeout_ms)
{
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::vector<int> pids;
    while (std::chrono::steady_clock::now() < until) {
        pids.clear();
        std::istringstream in(slurp(file));
        int p;
        while (in >> p)
            pids.push_back(p);
        if (pids.size() >= n)
            return pids;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return pids;
}

char proc_state(int pid)
{
    auto s = slurp("/proc/" + std::to_string(pid) + "/stat");
    auto close = s.rfind(')');
    if (close == std::string::npos || close + 2 >= s.size())
        return 0;
    return s[close + 2];
}

bool alive(int pid)
{
    char st = proc_state(pid);
    return st != 0 && st != 'Z' && st != 'X';
}

bool wait_gone(int pid, int timeout_ms)
{
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < until) {
        if (!alive(pid))
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return !alive(pid);
}

bool exited(int pid)
{
    return wait_gone(pid, 1000);
}

std::string proc_cgroup(int pid)
{
    auto c = detail::unified_cgroup(slurp("/proc/" + std::to_string(pid) + "/cgroup"));
    return c ? *c : "";
}

std::vector<int> descendants(int root)
{
    std::vector<std::pair<int, int>> all; // pid, ppid
    DIR* d = ::opendir("/proc");
    while (struct dirent* e = d ? ::readdir(d) : nullptr) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        int pid = std::atoi(e->d_name);
        auto s = slurp(std::string("/proc/") + e->d_name + "/stat");
        auto close = s.rfind(')');
        if (close == std::string::npos)
            continue;
        char st;
        int ppid;
        if (std::sscanf(s.c_str() + close + 1, " %c %d", &st, &ppid) == 2)
            all.emplace_back(pid, ppid);
    }
    if (d)
        ::closedir(d);
    std::vector<int> out{root};
    for (size_t i = 0; i < out.size(); ++i)
        for (auto& [pid, ppid] : all)
            if (ppid == out[i])
                out.push_back(pid);
    out.erase(out.begin());
    return out;
}

int open_fd_count()
{
    int n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
        ++n;
    return n;
}

std::vector<std::string> cgrun_cgroups_under(const std::string& parent)
{
    std::vector<std::string> out;
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(cgroup2_mount() + parent, ec)) {
        auto name = e.path().filename().string();
        if (e.is_directory() && name.rfind("cgrun-" + std::to_string(::getpid()) + "-", 0) == 0)
            out.push_back(name);
    }
    return out;
}

void destroy_cgroup(const std::string& path)
{
    std::string dir = cgroup2_mount() + path;
    {
        std::ofstream k(dir + "/cgroup.kill");
        k << "1";
    }
    for (int i = 0; i < 500; ++i) {
        if (slurp(dir + "/cgroup.events").find("populated 0") != std::string::npos)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    for (int i = 0; i < 100 && ::rmdir(dir.c_str()) != 0 && errno == EBUSY; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

bool unit_loaded(const std::string& unit)
{
    std::string cmd = "busctl --system call org.freedesktop.systemd1 /org/freedesktop/systemd1 "
                      "org.freedesktop.systemd1.Manager GetUnit s '" +
                      unit + "' >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
}

int cgrun_units()
{
    std::string cmd = "systemctl list-units --all --plain --no-legend 'cgrun-*' 2>/dev/null";
    int n = 0;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
        char buf[512];
        while (std::fgets(buf, sizeof buf, p))
            ++n;
        ::pclose(p);
    }
    return n;
}

namespace {
const char* const delegation_markers[] = {"trusted.delegate", "user.delegate"};

std::optional<std::string> xattr_of(const std::string& path, const char* name)
{
    char buf[64];
    auto n = ::getxattr(path.c_str(), name, buf, sizeof buf);
    if (n < 0)
        return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
}
} // namespace

std::optional<std::string> own_delegation_marker()
{
    for (const char* m : delegation_markers)
        if (xattr_of(cgroup2_mount() + own_cgroup(), m) == "1")
            return m;
    return std::nullopt;
}

// The library reads the marks once per process: it is told to look again.
undelegated::undelegated() : dir_(cgroup2_mount() + own_cgroup())
{
    for (const char* m : delegation_markers)
        if (auto v = xattr_of(dir_, m); v && ::removexattr(dir_.c_str(), m) == 0)
            removed_.emplace_back(m, *v);
    detail::forget_default_parent();
}

undelegated::~undelegated()
{
    for (auto& [name, value] : removed_)
        (void)::setxattr(dir_.c_str(), name.c_str(), value.data(), value.size(), 0);
    detail::forget_default_parent();
}

std::string unit_property(const std::string& unit, const std::string& name)
{
    std::string cmd = "systemctl show --value -p '" + name + "' '" + unit + "' 2>/dev/null";
    std::string out;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
        char buf[512];
        while (std::fgets(buf, sizeof buf, p))
            out += buf;
        ::pclose(p);
    }
    while (!out.empty() && out.back() == '\n')
        out.pop_back();
    return out;
}

void kill_all(const std::vector<int>& pids)
{
    for (int p : pids)
        if (p > 1)
            ::kill(p, SIGKILL);
}

options base_options(std::vector<std::string> argv)
{
    options o;
    o.argv = std::move(argv);
    o.method = method_under_test();
    o.stdio = {stdio_spec::null(), stdio_spec::inherit(), stdio_spec::inherit()};
    return o;
}

} // namespace cgrun::test
