#include "command_line.hpp"

#include "duration.hpp"

#include <cgrun/report.hpp>

#include <csignal>
#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <initializer_list>

namespace cgrun::tool {

namespace {

constexpr std::string_view see_help = "; see 'cgrun --help'";

enum class opt {
    timeout,
    cpu_time,
    kill_after,
    signal,
    method,
    user,
    system,
    slice,
    unit,
    cgroup_parent,
    description,
    delegated_scope,
    property,
    setenv,
    working_directory,
    uid,
    gid,
    nice,
    keep_orphans,
    on_leak,
    allow_leak,
    preserve_status,
    foreground,
    json,
    verbose,
    quiet,
    check,
    setup_cgroup,
    help,
    version,
};

struct opt_spec {
    std::string_view long_name;
    char short_name; // '\0' = long only
    bool takes_value;
    opt id;
};

constexpr std::array<opt_spec, 30> specs{{
    {"timeout", 't', true, opt::timeout},
    {"cpu-time", '\0', true, opt::cpu_time},
    {"kill-after", 'k', true, opt::kill_after},
    {"signal", 's', true, opt::signal},
    {"method", 'm', true, opt::method},
    {"user", '\0', false, opt::user},
    {"system", '\0', false, opt::system},
    {"slice", '\0', true, opt::slice},
    {"unit", '\0', true, opt::unit},
    {"cgroup-parent", '\0', true, opt::cgroup_parent},
    {"description", '\0', true, opt::description},
    {"delegated-scope", '\0', false, opt::delegated_scope},
    {"property", 'p', true, opt::property},
    {"setenv", 'E', true, opt::setenv},
    {"working-directory", 'd', true, opt::working_directory},
    {"uid", '\0', true, opt::uid},
    {"gid", '\0', true, opt::gid},
    {"nice", '\0', true, opt::nice},
    {"keep-orphans", '\0', false, opt::keep_orphans},
    {"on-leak", '\0', true, opt::on_leak},
    {"allow-leak", '\0', true, opt::allow_leak},
    {"preserve-status", '\0', false, opt::preserve_status},
    {"foreground", '\0', false, opt::foreground},
    {"json", '\0', true, opt::json},
    {"verbose", 'v', false, opt::verbose},
    {"quiet", 'q', false, opt::quiet},
    {"check", '\0', false, opt::check},
    {"setup-cgroup", '\0', false, opt::setup_cgroup},
    {"help", '\0', false, opt::help},
    {"version", '\0', false, opt::version},
}};

// Joins the parts into one string. `"literal" + std::string(...)` would do, but GCC 12 at -O3
// reports a false -Wrestrict in the inlined insert() it makes of that (GCC bug 105651).
std::string concat(std::initializer_list<std::string_view> parts)
{
    std::size_t size = 0;
    for (auto p : parts)
        size += p.size();
    std::string out;
    out.reserve(size);
    for (auto p : parts)
        out.append(p);
    return out;
}

std::string quoted(std::string_view s)
{
    return concat({"'", s, "'"});
}

// Like getopt_long: an exact name, else an unambiguous prefix.
const opt_spec* find_long(std::string_view name, std::string& problem)
{
    const opt_spec* found = nullptr;
    for (const auto& spec : specs) {
        if (spec.long_name == name)
            return &spec;
        if (spec.long_name.starts_with(name)) {
            if (found) {
                problem = "option " + quoted(concat({"--", name})) + " is ambiguous" +
                          std::string(see_help);
                return nullptr;
            }
            found = &spec;
        }
    }
    if (!found)
        problem = "unrecognized option " + quoted(concat({"--", name})) + std::string(see_help);
    return found;
}

const opt_spec* find_short(char c)
{
    auto it = std::find_if(specs.begin(), specs.end(),
                           [c](const opt_spec& s) { return s.short_name == c; });
    return it == specs.end() ? nullptr : &*it;
}

bool valid_unit_name(std::string_view name)
{
    constexpr std::string_view suffix = ".scope";
    std::string_view base = name;
    if (base.ends_with(suffix))
        base.remove_suffix(suffix.size());
    if (base.empty() || base.size() + suffix.size() >= 256)
        return false;
    return std::all_of(base.begin(), base.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               std::string_view(":_.-\\@").find(c) != std::string_view::npos;
    });
}

std::optional<std::string> parse_property(std::string_view text, options& opts)
{
    auto eq = text.find('=');
    if (eq == std::string_view::npos)
        return "invalid property " + quoted(text) + ": expected NAME=VALUE";
    auto name = text.substr(0, eq);
    auto value = text.substr(eq + 1);
    if (name.empty())
        return "invalid property " + quoted(text) + ": empty name";
    if (std::find(limit_names.begin(), limit_names.end(), name) == limit_names.end()) {
        std::string supported;
        for (auto n : limit_names)
            supported += concat({supported.empty() ? "" : ", ", n});
        return "unknown property " + quoted(name) + " (supported: " + supported + ")";
    }
    if (value.empty())
        return "invalid property " + quoted(text) + ": empty value";
    opts.limits.push_back({std::string(name), std::string(value)});
    return std::nullopt;
}

// What was given explicitly, for the rules that look at several options together.
struct given {
    bool timeout = false;
    bool kill_after = false;
    bool signal = false;
    bool method = false;
    // The last option given that only the scope (cgroup) method honours, e.g. "--unit".
    std::string_view scope_option;
    std::string_view cgroup_option;
    // The last option given that only a run of a command reads ("--uid"), and the last one
    // that --check reads but --setup-cgroup does not ("--method"): refused with those.
    std::string_view run_option;
    std::string_view check_option;
};

// Sorts `spec` into what given::run_option and given::check_option track.
void note_scope_of(const opt_spec& spec, given& seen)
{
    switch (spec.id) {
    case opt::method:
    case opt::user:
    case opt::system:
    case opt::slice:
        seen.check_option = spec.long_name;
        break;
    case opt::cgroup_parent:
    case opt::json:
    case opt::verbose:
    case opt::quiet:
    case opt::check:
    case opt::setup_cgroup:
    case opt::help:
    case opt::version:
        break;
    default:
        seen.run_option = spec.long_name;
    }
}

// An option that only one method honours implies that method; it never runs weaker.
std::optional<std::string> implied_method(const given& seen, options& opts)
{
    if (!seen.scope_option.empty() && !seen.cgroup_option.empty())
        return std::string(seen.scope_option) + " needs the scope method and " +
               std::string(seen.cgroup_option) + " the cgroup method; give one of them";
    for (auto [option, m] : {std::pair{seen.scope_option, method::scope},
                             std::pair{seen.cgroup_option, method::cgroup}}) {
        if (option.empty())
            continue;
        if (opts.method == method::automatic)
            opts.method = m;
        else if (opts.method != m)
            return std::string(option) + " needs the " + std::string(to_string(m)) +
                   " method, not -m " + std::string(to_string(opts.method));
    }
    return std::nullopt;
}

std::optional<std::string> apply(const opt_spec& spec, std::string_view value, command_line& cmd,
                                 given& seen)
{
    auto& opts = cmd.opts;
    switch (spec.id) {
    case opt::timeout: {
        auto d = parse_duration(value);
        if (!d)
            return "invalid time interval " + quoted(value);
        opts.timeout = d->count() == 0 ? std::nullopt : std::optional(*d);
        seen.timeout = true;
        break;
    }
    case opt::cpu_time: {
        auto d = parse_duration(value);
        if (!d)
            return "invalid time interval " + quoted(value);
        opts.cpu_time = d->count() == 0 ? std::nullopt : std::optional(*d);
        break;
    }
    case opt::kill_after: {
        auto d = parse_duration(value);
        if (!d)
            return "invalid time interval " + quoted(value);
        opts.kill.grace = *d;
        seen.kill_after = true;
        break;
    }
    case opt::signal: {
        auto sig = signal_from_string(value);
        if (!sig || *sig < 1 || *sig > SIGRTMAX)
            return "invalid signal " + quoted(value);
        opts.kill.signal = *sig;
        seen.signal = true;
        break;
    }
    case opt::method: {
        auto m = method_from_string(value);
        if (!m)
            return "invalid method " + quoted(value) + " (expected auto, scope, cgroup, subreaper or pgroup)";
        opts.method = *m;
        seen.method = true;
        break;
    }
    case opt::user:
        opts.scope.bus = bus_kind::user;
        seen.scope_option = "--user";
        break;
    case opt::system:
        opts.scope.bus = bus_kind::system;
        seen.scope_option = "--system";
        break;
    case opt::slice:
        if (value.empty())
            return "empty slice name";
        opts.scope.slice = value;
        seen.scope_option = "--slice";
        break;
    case opt::unit:
        if (!valid_unit_name(value))
            return "invalid unit name " + quoted(value);
        opts.scope.unit = value;
        seen.scope_option = "--unit";
        break;
    case opt::cgroup_parent:
        if (value.empty())
            return "empty cgroup parent";
        if (opts.cgroup.delegated_scope)
            return "--cgroup-parent and --delegated-scope exclude each other";
        opts.cgroup.parent = value;
        seen.cgroup_option = "--cgroup-parent";
        break;
    case opt::description:
        if (value.empty())
            return "empty description";
        opts.scope.description = value;
        break;
    case opt::delegated_scope:
        if (!opts.cgroup.parent.empty())
            return "--cgroup-parent and --delegated-scope exclude each other";
        opts.cgroup.delegated_scope = true;
        seen.cgroup_option = "--delegated-scope";
        break;
    case opt::property:
        return parse_property(value, opts);
    case opt::setenv:
        if (value.empty() || value[0] == '=')
            return "invalid environment assignment " + quoted(value) + ": expected NAME=VALUE or NAME";
        cmd.setenv.emplace_back(value);
        break;
    case opt::working_directory:
        if (value.empty())
            return "empty working directory";
        opts.cwd = value;
        break;
    case opt::uid:
        if (value.empty())
            return "empty user for --uid";
        cmd.run_user = value;
        break;
    case opt::gid:
        if (value.empty())
            return "empty group for --gid";
        cmd.run_group = value;
        break;
    case opt::nice: {
        int n = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (ec != std::errc{} || end != value.data() + value.size() || n < -20 || n > 19)
            return "invalid nice value " + quoted(value) + " (expected -20..19)";
        opts.nice = n;
        break;
    }
    case opt::keep_orphans:
        cmd.on_leak = leak_policy::keep;
        break;
    case opt::on_leak:
        if (value == "kill")
            cmd.on_leak = leak_policy::kill;
        else if (value == "keep")
            cmd.on_leak = leak_policy::keep;
        else if (value == "fail")
            cmd.on_leak = leak_policy::fail;
        else
            return "invalid leak policy " + quoted(value) + " (expected kill, keep or fail)";
        break;
    case opt::allow_leak:
        if (value.empty())
            return "empty pattern for --allow-leak";
        cmd.allowed_leaks.emplace_back(value);
        break;
    case opt::preserve_status:
        cmd.preserve_status = true;
        break;
    case opt::foreground:
        // timeout(1) needs it to let COMMAND use the terminal; cgrun always hands the
        // terminal over when it has it, and still stops COMMAND's children: nothing to do.
        break;
    case opt::json:
        if (value.empty())
            return "empty file name for --json";
        cmd.json_path = value;
        break;
    case opt::verbose:
        cmd.verbose = true;
        break;
    case opt::quiet:
        cmd.quiet = true;
        break;
    case opt::check:
        cmd.what = action::check;
        break;
    case opt::setup_cgroup:
        cmd.what = action::setup;
        break;
    case opt::help:
        cmd.what = action::help;
        break;
    case opt::version:
        cmd.what = action::version;
        break;
    }
    return std::nullopt;
}

} // namespace

parse_result parse_command_line(std::span<const std::string_view> args)
{
    parse_result out;
    auto& cmd = out.cmd;
    given seen;
    std::size_t i = 1;
    for (; i < args.size(); ++i) {
        std::string_view arg = args[i];
        if (arg == "--") {
            ++i;
            break;
        }
        if (arg.size() < 2 || arg[0] != '-')
            break;

        if (arg.starts_with("--")) {
            auto body = arg.substr(2);
            auto eq = body.find('=');
            std::string problem;
            const opt_spec* spec = find_long(body.substr(0, eq), problem);
            if (!spec) {
                out.problem = problem;
                return out;
            }
            std::string_view value;
            if (spec->takes_value) {
                if (eq != std::string_view::npos) {
                    value = body.substr(eq + 1);
                } else if (i + 1 < args.size()) {
                    value = args[++i];
                } else {
                    out.problem = "option " + quoted(concat({"--", spec->long_name})) +
                                  " requires an argument" + std::string(see_help);
                    return out;
                }
            } else if (eq != std::string_view::npos) {
                out.problem = "option " + quoted(concat({"--", spec->long_name})) +
                              " doesn't allow an argument" + std::string(see_help);
                return out;
            }
            if ((out.problem = apply(*spec, value, cmd, seen)))
                return out;
            note_scope_of(*spec, seen);
        } else {
            for (std::size_t j = 1; j < arg.size(); ++j) {
                const opt_spec* spec = find_short(arg[j]);
                if (!spec) {
                    out.problem = "invalid option -- " + quoted(arg.substr(j, 1)) +
                                  std::string(see_help);
                    return out;
                }
                note_scope_of(*spec, seen);
                if (!spec->takes_value) {
                    if ((out.problem = apply(*spec, {}, cmd, seen)))
                        return out;
                    continue;
                }
                std::string_view value;
                if (j + 1 < arg.size()) {
                    value = arg.substr(j + 1);
                } else if (i + 1 < args.size()) {
                    value = args[++i];
                } else {
                    out.problem = "option requires an argument -- " + quoted(arg.substr(j, 1)) +
                                  std::string(see_help);
                    return out;
                }
                if ((out.problem = apply(*spec, value, cmd, seen)))
                    return out;
                break;
            }
        }
        if (cmd.what == action::help || cmd.what == action::version)
            return out;
    }

    // timeout(1)'s form: cgrun DURATION COMMAND [ARG]...
    if (cmd.what == action::run && !seen.timeout && args.size() - i >= 2) {
        if (auto d = parse_duration(args[i])) {
            cmd.opts.timeout = d->count() == 0 ? std::nullopt : std::optional(*d);
            ++i;
        }
    }
    cmd.opts.argv.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
    cmd.opts.keep_orphans = cmd.on_leak == leak_policy::keep;
    if (!cmd.allowed_leaks.empty() && cmd.on_leak != leak_policy::fail) {
        out.problem = "--allow-leak only means something with --on-leak=fail";
        return out;
    }

    // -s alone: the signal at the deadline, SIGKILL a default grace later (never dropped).
    if (seen.signal && !seen.kill_after)
        cmd.opts.kill.grace = default_signal_grace;
    else if (seen.signal && cmd.opts.kill.grace.count() == 0 && cmd.opts.kill.signal != SIGKILL) {
        out.problem = concat({"--signal=", signal_name(cmd.opts.kill.signal),
                              " would never be sent with --kill-after=0 (SIGKILL at once)"});
        return out;
    }

    // --check proves what the host offers; it is no run that could be weakened.
    if (cmd.what == action::run) {
        if ((out.problem = implied_method(seen, cmd.opts)))
            return out;
    }

    // An option that would be ignored is refused: the caller asked for something.
    auto ignored = [&](std::string_view option, std::string_view action, std::string_view why) {
        return concat({"--", option, " has no effect with --", action, why});
    };
    if (cmd.what == action::setup) {
        if (!cmd.opts.argv.empty())
            out.problem = "--setup-cgroup takes no command";
        else if (!seen.run_option.empty())
            out.problem = ignored(seen.run_option, "setup-cgroup", " (it applies to a run of a command)");
        else if (!seen.check_option.empty())
            out.problem = ignored(seen.check_option, "setup-cgroup", " (it uses no method)");
    } else if (cmd.what == action::check) {
        if (!cmd.opts.argv.empty())
            out.problem = "--check takes no command";
        else if (!seen.run_option.empty())
            out.problem = ignored(seen.run_option, "check", " (it applies to a run of a command)");
        else if (cmd.opts.method == method::pgroup || cmd.opts.method == method::subreaper)
            out.problem = "--check proves the scope and cgroup methods only";
    } else if (cmd.opts.argv.empty()) {
        out.problem = "missing command" + std::string(see_help);
    }
    return out;
}

namespace {

std::optional<unsigned> all_digits(std::string_view s)
{
    unsigned n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc{} || end != s.data() + s.size() || n == static_cast<unsigned>(-1))
        return std::nullopt;
    return n;
}

// Sets NAME in `env`, dropping every earlier entry of it.
void set_variable(std::vector<std::string>& env, std::string_view name, std::string_view value)
{
    std::string entry = concat({name, "=", value});
    std::erase_if(env, [&](const std::string& e) {
        return e.size() > name.size() && e.compare(0, name.size(), name) == 0 && e[name.size()] == '=';
    });
    env.push_back(std::move(entry));
}

std::string_view lookup(const char* const* environment, std::string_view name)
{
    for (auto e = environment; e && *e; ++e) {
        std::string_view entry = *e;
        if (entry.size() > name.size() && entry.starts_with(name) && entry[name.size()] == '=')
            return entry.substr(name.size() + 1);
    }
    return {};
}

} // namespace

std::optional<std::string> resolve_run_options(command_line& cmd, const char* const* environment)
{
    auto& opts = cmd.opts;
    std::vector<std::pair<std::string, std::string>> login; // of --uid's user
    if (cmd.run_user) {
        const std::string& u = *cmd.run_user;
        errno = 0;
        auto number = all_digits(u);
        struct passwd* pw = number ? ::getpwuid(*number) : ::getpwnam(u.c_str());
        if (!pw && !number)
            return "unknown user " + quoted(u) + (errno != 0 ? concat({" (", std::strerror(errno), ")"}) : "");
        opts.run_as.uid = number ? *number : pw->pw_uid;
        if (pw)
            login = {{"HOME", pw->pw_dir}, {"SHELL", pw->pw_shell}, {"USER", pw->pw_name}, {"LOGNAME", pw->pw_name}};
    }
    if (cmd.run_group) {
        const std::string& g = *cmd.run_group;
        errno = 0;
        auto number = all_digits(g);
        struct group* gr = number ? nullptr : ::getgrnam(g.c_str());
        if (!number && !gr)
            return "unknown group " + quoted(g) + (errno != 0 ? concat({" (", std::strerror(errno), ")"}) : "");
        opts.run_as.gid = number ? *number : gr->gr_gid;
    }
    if (login.empty() && cmd.setenv.empty())
        return std::nullopt;
    std::vector<std::string> env;
    for (auto e = environment; e && *e; ++e)
        env.emplace_back(*e);
    for (auto& [name, value] : login)
        set_variable(env, name, value);
    for (const auto& s : cmd.setenv) {
        auto eq = s.find('=');
        if (eq == std::string::npos)
            set_variable(env, s, lookup(environment, s));
        else
            set_variable(env, std::string_view(s).substr(0, eq), std::string_view(s).substr(eq + 1));
    }
    opts.env = std::move(env);
    return std::nullopt;
}

std::string_view help_text() noexcept
{
    return R"(Usage: cgrun [OPTION]... [--] COMMAND [ARG]...
  or:  cgrun [OPTION]... DURATION COMMAND [ARG]...
  or:  cgrun --check [--json FILE]
  or:  cgrun --setup-cgroup [--cgroup-parent PATH] [--json FILE]
Run COMMAND with its whole process tree contained; stop the tree when COMMAND
exits, when it times out, or when cgrun is interrupted.

  -t, --timeout=DURATION     stop the tree after DURATION (0: no limit)
      --cpu-time=DURATION    stop the tree when all its processes together
                               have used DURATION of CPU time (0: no limit;
                               needs the scope or cgroup method)
  -k, --kill-after=DURATION  to stop the tree, send SIG first and SIGKILL
                               DURATION later (default: 0, SIGKILL at once;
                               5s when -s is given)
  -s, --signal=SIG           signal to send first, by name or number (TERM)
      --preserve-status      exit with the status of COMMAND even when it
                               timed out (128+9 if it was killed)
      --foreground           accepted for timeout(1); COMMAND gets the terminal
                               anyway and its children are still stopped
  -m, --method=METHOD        auto (default), scope, cgroup, subreaper or pgroup
      --user, --system       the systemd manager for the scope method  [*]
      --slice=NAME           slice of the scope                        [*]
      --unit=NAME            name of the scope                         [*]
      --cgroup-parent=PATH   parent cgroup for the cgroup method       [*]
      --description=TEXT     description of the scope (other methods have
                               no unit to describe: ignored there)
      --delegated-scope      the cgroup method's cgroup goes under a scope
                               cgrun-<pid>.scope with Delegate=yes,
                               started for this run                    [*]
  -p, --property=NAME=VALUE  a limit, with systemd's syntax (repeatable):
                               MemoryMax=, MemoryHigh=, MemoryLow=, MemoryMin=,
                               MemorySwapMax= (1.5G, 50% of RAM, infinity),
                               TasksMax= (N, N%, infinity), CPUQuota= (0.5%),
                               CPUWeight= (1-10000, idle), IOWeight= (1-10000),
                               AllowedCPUs= (0-3,5); a missing controller fails
                               with 125
  -E, --setenv=NAME[=VALUE]  set NAME in COMMAND's environment (repeatable);
                               without '=', its value in cgrun's environment
  -d, --working-directory=DIR
                             run COMMAND in DIR (entered as the --uid user)
      --uid=USER             run COMMAND as USER (name or number; root only)
                               with USER's primary group (unless --gid),
                               groups, HOME, SHELL, USER and LOGNAME
      --gid=GROUP            run COMMAND with GROUP (name or number; root
                               only); a uid without a passwd entry needs it
      --nice=N               run COMMAND with nice value N (-20..19)
      --on-leak=POLICY       what COMMAND leaves running when it exits: kill
                               (default), keep, or fail: kill it and exit 123
                               if COMMAND succeeded
      --keep-orphans         the same as --on-leak=keep
      --allow-leak=PATTERN   with --on-leak=fail, a leftover whose command
                               line matches PATTERN does not fail the run
                               (repeatable)
      --json=FILE            write a JSON report to FILE ('-': stdout)
  -v, --verbose              tell on stderr how the tree is contained
  -q, --quiet                no warning when auto ends at a process group
      --check                probe the host, prove containment, and exit
      --setup-cgroup         move the processes of the own cgroup (or of
                               --cgroup-parent) into its leaf 'init' and enable
                               its controllers for children, so that -p limits
                               work in a container or a Delegate=yes unit
      --help                 display this help and exit
      --version              output version information and exit

DURATION is a number with an optional unit: ms, s (default), m, h or d.
Without -t, a first operand that is a DURATION and is followed by COMMAND is
the timeout, as in timeout(1) (cgrun 10 make); use -t or ./NAME to run a
command whose name looks like a DURATION.
The auto method takes a systemd scope, else a cgroup, else a reaper process
(subreaper), else a process group (inside a cgroup systemd delegated to cgrun,
a Delegate=yes unit, a cgroup of it comes first); all but the last contain processes that
call setsid(), so cgrun warns on stderr when it ends at a process group (-q:
not). If cgrun itself is killed, a guard process kills the tree. [*] These options select
their method (with -m auto or no -m; another -m is an error): if it cannot be
had, cgrun fails with 125 and starts nothing, never runs with a weaker one.

PATTERN is a shell glob (fnmatch(3); '*' also matches '/') matched against the
whole command line of a leftover, its arguments joined by single spaces.

COMMAND stays in the same containment whatever its user. A DIR it cannot enter,
or a --uid, --gid or --nice the kernel refuses, fails with 125 before COMMAND
runs.

Exit status: that of COMMAND; 123 if it succeeded but left processes running
(--on-leak=fail); 124 if it timed out or used up --cpu-time (also when the tree was
killed with SIGKILL: timeout(1) gives 137 then); 125 if cgrun failed;
126 if COMMAND is not executable; 127 if it was not found; 128+N if it died
of signal N, or if cgrun was stopped by signal N.
)";
}

} // namespace cgrun::tool
