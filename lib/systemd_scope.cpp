// The D-Bus conversation with a systemd manager: build StartTransientUnit, call, wait for its job.

#include "systemd_scope.hpp"

#include <config.h>

#if CGRUN_HAVE_SYSTEMD

#include "sd_bus_api.hpp"
#include "sd_bus_ptr.hpp"
#include "sys.hpp"

#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <set>
#include <unordered_map>

namespace cgrun::detail {

namespace {
constexpr const char* systemd_service = "org.freedesktop.systemd1";
constexpr const char* manager_path = "/org/freedesktop/systemd1";
constexpr const char* manager_iface = "org.freedesktop.systemd1.Manager";

std::uint64_t usec(std::chrono::milliseconds d)
{
    return static_cast<std::uint64_t>(d.count()) * 1000;
}

error bus_failure(errc e, const std::string& what, int r, const bus_error& err)
{
    std::string msg = what + ": ";
    if (err.is_set())
        msg += std::string(err.message()) + " (" + err.name() + ")";
    else
        msg += std::error_code(-r, std::system_category()).message();
    return error::make(e, msg);
}
} // namespace

class scope_manager {
public:
    std::mutex mutex;
    bus_ptr bus;
    slot_ptr job_match;
    bool user = false;
    bool broken = false;
    bool oom_policy = true; // the manager takes OOMPolicy= for scopes (253, and Debian's 252)
    pid_t owner = ::getpid(); // sd-bus connections do not survive fork()
    // Units whose start job we wait for, and the results JobRemoved brought for them.
    std::set<std::string> waiting;
    std::unordered_map<std::string, std::string> job_results;
};

namespace {

int on_job_removed(sd_bus_message* m, void* userdata, sd_bus_error*)
{
    auto* mgr = static_cast<scope_manager*>(userdata);
    std::uint32_t id = 0;
    const char* job = nullptr;
    const char* unit = nullptr;
    const char* result = nullptr;
    if (sd().sd_bus_message_read(m, "uoss", &id, &job, &unit, &result) < 0)
        return 0;
    if (mgr->waiting.count(unit))
        mgr->job_results[unit] = result;
    return 0;
}

bool connection_error(int r)
{
    return r == -ECONNRESET || r == -ENOTCONN || r == -EPIPE || r == -ESHUTDOWN || r == -ECONNREFUSED;
}

result<std::shared_ptr<scope_manager>> open_manager(bool user, std::chrono::milliseconds timeout)
{
    auto mgr = std::make_shared<scope_manager>();
    mgr->user = user;
    const char* why = "";
    if (!sd_bus_load(&why))
        return error::make(errc::systemd_unavailable, why);
    sd_bus* raw = nullptr;
    int r = user ? sd().sd_bus_open_user(&raw) : sd().sd_bus_open_system(&raw);
    const char* which = user ? "user" : "system";
    if (r < 0)
        return error::make(errc::systemd_unavailable, std::string("connect to the ") + which + " bus: " +
                                                          std::error_code(-r, std::system_category()).message());
    mgr->bus.reset(raw);
    // sd-bus waits 25 s for a reply by default; a wedged manager must not stall a spawn.
    (void)sd().sd_bus_set_method_call_timeout(raw, usec(timeout));

    // The match is installed once, before any StartTransientUnit on this connection, so no
    // JobRemoved can be missed. It is also the first round trip: it proves the bus answers.
    sd_bus_slot* slot = nullptr;
    r = sd().sd_bus_match_signal(raw, &slot, systemd_service, manager_path, manager_iface, "JobRemoved",
                            on_job_removed, mgr.get());
    if (r < 0)
        return error::make(errc::systemd_unavailable, std::string("subscribe to JobRemoved on the ") + which +
                                                          " bus: " +
                                                          std::error_code(-r, std::system_category()).message());
    mgr->job_match.reset(slot);

    // Is there a systemd manager behind the bus (a bare dbus-daemon has none)?
    bus_error err;
    message_ptr reply;
    sd_bus_message* rep = nullptr;
    r = sd().sd_bus_call_method(raw, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                           "GetNameOwner", err.get(), &rep, "s", systemd_service);
    reply.reset(rep);
    if (r < 0)
        return bus_failure(errc::systemd_unavailable, std::string("no systemd manager on the ") + which + " bus", r,
                           err);
    return mgr;
}

} // namespace

result<std::shared_ptr<scope_manager>> connect_manager(bus_kind kind, std::chrono::milliseconds timeout)
{
    bool user = kind == bus_kind::user || (kind == bus_kind::automatic && ::geteuid() != 0);
    // One connection per thread and bus: a call holds its connection until the start job
    // is done, so a shared one would serialise scope starts of concurrent threads.
    thread_local std::shared_ptr<scope_manager> cache[2];
    auto& slot = cache[user ? 1 : 0];
    if (slot && slot->owner != ::getpid())
        slot.reset(); // inherited through fork(): sd-bus refuses it with ECHILD
    if (slot) {
        std::lock_guard l2(slot->mutex);
        if (!slot->broken)
            return slot;
    }
    auto mgr = open_manager(user, timeout);
    if (!mgr)
        return mgr.error();
    slot = *mgr;
    return slot;
}

namespace {

// Appends one (sv) of a "t" or "ay" property; a negative errno on failure.
int append_property(sd_bus_message* m, const scope_property& p)
{
    if (auto* u = std::get_if<std::uint64_t>(&p.value))
        return sd().sd_bus_message_append(m, "(sv)", p.name.c_str(), "t", *u);
    int r = 0;
    if ((r = sd().sd_bus_message_open_container(m, 'r', "sv")) < 0 ||
        (r = sd().sd_bus_message_append(m, "s", p.name.c_str())) < 0 ||
        (r = sd().sd_bus_message_open_container(m, 'v', "ay")) < 0 ||
        (r = sd().sd_bus_message_open_container(m, 'a', "y")) < 0)
        return r;
    for (std::uint8_t b : std::get<std::vector<std::uint8_t>>(p.value))
        if ((r = sd().sd_bus_message_append(m, "y", b)) < 0)
            return r;
    if ((r = sd().sd_bus_message_close_container(m)) < 0 || (r = sd().sd_bus_message_close_container(m)) < 0)
        return r;
    return sd().sd_bus_message_close_container(m);
}

// Builds StartTransientUnit(req.unit, "fail", properties, no auxiliary units).
result<message_ptr> build_start(sd_bus* bus, const scope_request& req, bool oom_policy)
{
    const std::string what = "StartTransientUnit " + req.unit;
    auto fail = [&](int rr) {
        return error::make(errc::scope_failed,
                           what + ": building message: " + std::error_code(-rr, std::system_category()).message());
    };
    sd_bus_message* raw = nullptr;
    int r = sd().sd_bus_message_new_method_call(bus, &raw, systemd_service, manager_path, manager_iface,
                                                "StartTransientUnit");
    message_ptr msg(raw);
    if (r < 0)
        return fail(r);
    if ((r = sd().sd_bus_message_append(raw, "ss", req.unit.c_str(), "fail")) < 0)
        return fail(r);
    if ((r = sd().sd_bus_message_open_container(raw, 'a', "(sv)")) < 0)
        return fail(r);
    if ((r = sd().sd_bus_message_append(raw, "(sv)", "Description", "s", req.description.c_str())) < 0)
        return fail(r);
    if ((r = sd().sd_bus_message_open_container(raw, 'r', "sv")) < 0 ||
        (r = sd().sd_bus_message_append(raw, "s", "PIDs")) < 0 ||
        (r = sd().sd_bus_message_open_container(raw, 'v', "au")) < 0 ||
        (r = sd().sd_bus_message_open_container(raw, 'a', "u")) < 0)
        return fail(r);
    for (pid_t pid : req.pids)
        if ((r = sd().sd_bus_message_append(raw, "u", static_cast<std::uint32_t>(pid))) < 0)
            return fail(r);
    if ((r = sd().sd_bus_message_close_container(raw)) < 0 || (r = sd().sd_bus_message_close_container(raw)) < 0 ||
        (r = sd().sd_bus_message_close_container(raw)) < 0)
        return fail(r);
    // A failed (e.g. timed-out) scope would otherwise stay listed until reset-failed.
    if ((r = sd().sd_bus_message_append(raw, "(sv)", "CollectMode", "s", "inactive-or-failed")) < 0)
        return fail(r);
    // systemd's default OOMPolicy=stop makes it stop the scope as soon as the kernel OOM-kills
    // one of its processes: it kills the sentinel that holds the cgroup for our final sample
    // and removes the cgroup, racing our read of memory.events (the report then said
    // oom_killed false). cgrun stops the tree itself, so systemd is asked to keep out of it.
    if (oom_policy && (r = sd().sd_bus_message_append(raw, "(sv)", "OOMPolicy", "s", "continue")) < 0)
        return fail(r);
    if (!req.slice.empty() && (r = sd().sd_bus_message_append(raw, "(sv)", "Slice", "s", req.slice.c_str())) < 0)
        return fail(r);
    if (req.runtime_max_usec &&
        (r = sd().sd_bus_message_append(raw, "(sv)", "RuntimeMaxUSec", "t", *req.runtime_max_usec)) < 0)
        return fail(r);
    // systemd's default of 90 s between its SIGTERM and SIGKILL would let a TERM-ignoring
    // child outlive the backstop deadline by that much.
    if (req.timeout_stop_usec &&
        (r = sd().sd_bus_message_append(raw, "(sv)", "TimeoutStopUSec", "t", req.timeout_stop_usec)) < 0)
        return fail(r);
    if (req.kill_signal && (r = sd().sd_bus_message_append(raw, "(sv)", "KillSignal", "i", req.kill_signal)) < 0)
        return fail(r);
    if (req.delegate && (r = sd().sd_bus_message_append(raw, "(sv)", "Delegate", "b", 1)) < 0)
        return fail(r);
    for (auto& p : req.properties)
        if ((r = append_property(raw, p)) < 0)
            return fail(r);
    if ((r = sd().sd_bus_message_close_container(raw)) < 0)
        return fail(r);
    if ((r = sd().sd_bus_message_append(raw, "a(sa(sv))", 0)) < 0)
        return fail(r);
    return msg;
}

// Waits for the JobRemoved of req.unit's start job (the match was installed before the call).
result<void> wait_for_job(scope_manager& m, const std::string& unit, const std::string& what,
                          std::chrono::milliseconds timeout)
{
    sd_bus* bus = m.bus.get();
    auto deadline = sys::now() + timeout;
    for (;;) {
        if (auto it = m.job_results.find(unit); it != m.job_results.end()) {
            if (it->second != "done")
                return error::make(errc::scope_failed, what + ": start job " + it->second);
            return {};
        }
        int r = sd().sd_bus_process(bus, nullptr);
        if (r < 0) {
            m.broken = true;
            return error::make(errc::scope_failed,
                               what + ": waiting for the job: " + std::error_code(-r, std::system_category()).message());
        }
        if (r > 0)
            continue;
        auto now = sys::now();
        if (now >= deadline)
            return error::make(errc::scope_failed, what + ": start job did not finish within " +
                                                       std::to_string(timeout.count()) + " ms");
        r = sd().sd_bus_wait(bus, static_cast<std::uint64_t>(
                                      std::chrono::duration_cast<std::chrono::microseconds>(deadline - now).count()));
        if (r < 0 && r != -EINTR) {
            m.broken = true;
            return error::make(errc::scope_failed,
                               what + ": waiting for the job: " + std::error_code(-r, std::system_category()).message());
        }
    }
}

} // namespace

result<void> start_scope(scope_manager& m, const scope_request& req, std::chrono::milliseconds timeout)
{
    std::lock_guard lock(m.mutex);
    const std::string what = "StartTransientUnit " + req.unit;

    m.waiting.insert(req.unit);
    struct forget {
        scope_manager& m;
        const std::string& unit;
        ~forget()
        {
            m.waiting.erase(unit);
            m.job_results.erase(unit);
        }
    } forget_on_return{m, req.unit};

    for (;;) {
        auto msg = build_start(m.bus.get(), req, m.oom_policy);
        if (!msg)
            return msg.error();
        bus_error err;
        sd_bus_message* rep = nullptr;
        int r = sd().sd_bus_call(m.bus.get(), msg->get(), usec(timeout), err.get(), &rep);
        message_ptr reply(rep);
        if (r >= 0)
            break;
        if (connection_error(r))
            m.broken = true;
        // A manager that predates OOMPolicy= for scopes refuses the property (and, on those
        // versions, still stops an OOM-killed scope: the report may then miss the OOM kill).
        if (m.oom_policy && err.is_set() && std::string(err.message()).find("OOMPolicy") != std::string::npos) {
            m.oom_policy = false;
            continue;
        }
        return bus_failure(errc::scope_failed, what, r, err);
    }
    // The child waits, blocked before exec, until the job that moves it into the scope is done.
    return wait_for_job(m, req.unit, what, timeout);
}

void stop_scope(scope_manager& m, const std::string& unit, std::chrono::milliseconds timeout)
{
    std::lock_guard lock(m.mutex);
    bus_error err;
    sd_bus_message* rep = nullptr;
    sd_bus_message* call = nullptr;
    if (sd().sd_bus_message_new_method_call(m.bus.get(), &call, systemd_service, manager_path, manager_iface,
                                       "StopUnit") < 0)
        return;
    message_ptr msg(call);
    if (sd().sd_bus_message_append(call, "ss", unit.c_str(), "replace") < 0)
        return;
    (void)sd().sd_bus_call(m.bus.get(), call, usec(timeout), err.get(), &rep);
    message_ptr reply(rep);
}

void finish_scope(scope_manager& m, const std::string& unit)
{
    std::lock_guard lock(m.mutex);
    // A floating async call: sd-bus drops the reply (or the NoSuchUnit error when systemd
    // was quicker) on a later dispatch.
    if (sd().sd_bus_call_method_async(m.bus.get(), nullptr, systemd_service, manager_path, manager_iface, "StopUnit",
                                 nullptr, nullptr, "ss", unit.c_str(), "replace") >= 0)
        (void)sd().sd_bus_flush(m.bus.get());
}

result<bool> unit_loaded(scope_manager& m, const std::string& unit, std::chrono::milliseconds timeout)
{
    std::lock_guard lock(m.mutex);
    bus_error err;
    sd_bus_message* rep = nullptr;
    sd_bus_message* call = nullptr;
    int r = sd().sd_bus_message_new_method_call(m.bus.get(), &call, systemd_service, manager_path, manager_iface,
                                           "GetUnit");
    message_ptr msg(call);
    if (r < 0 || (r = sd().sd_bus_message_append(call, "s", unit.c_str())) < 0)
        return error::from_errno(-r, "GetUnit " + unit);
    r = sd().sd_bus_call(m.bus.get(), call, usec(timeout), err.get(), &rep);
    message_ptr reply(rep);
    if (r >= 0)
        return true;
    if (err.is_set() && std::string(err.name()) == "org.freedesktop.systemd1.NoSuchUnit")
        return false;
    return bus_failure(errc::systemd_unavailable, "GetUnit " + unit, r, err);
}

} // namespace cgrun::detail

#else // !CGRUN_HAVE_SYSTEMD

namespace cgrun::detail {

class scope_manager {};

result<std::shared_ptr<scope_manager>> connect_manager(bus_kind, std::chrono::milliseconds)
{
    return error::make(errc::systemd_unavailable, "built without libsystemd");
}

result<void> start_scope(scope_manager&, const scope_request&, std::chrono::milliseconds)
{
    return error::make(errc::systemd_unavailable, "built without libsystemd");
}

void stop_scope(scope_manager&, const std::string&, std::chrono::milliseconds) {}

void finish_scope(scope_manager&, const std::string&) {}

result<bool> unit_loaded(scope_manager&, const std::string&, std::chrono::milliseconds)
{
    return error::make(errc::systemd_unavailable, "built without libsystemd");
}

} // namespace cgrun::detail

#endif
