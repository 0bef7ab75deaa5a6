#pragma once

#include <cgrun/options.hpp>

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cgrun::tool {

enum class action { run, check, setup, help, version };

// With -s SIG but no -k: SIG at the deadline, SIGKILL this much later.
inline constexpr std::chrono::milliseconds default_signal_grace{5000};

// What to do with what COMMAND leaves running when it exits by itself.
enum class leak_policy {
    kill, // kill it (the default)
    keep, // leave it running (--keep-orphans)
    fail, // kill it, and exit 123 if COMMAND succeeded but left something not allowed
};

struct command_line {
    action what = action::run;
    options opts;                         // argv holds COMMAND [ARG...]
    std::optional<std::string> json_path; // "-" = stdout
    bool verbose = false;
    // Exit with COMMAND's status even when it timed out (as timeout --preserve-status).
    bool preserve_status = false;
    // No warning when auto ends at a process group.
    bool quiet = false;
    leak_policy on_leak = leak_policy::kill;
    // --allow-leak: shell globs (fnmatch) matched against a leftover's argv joined with spaces.
    std::vector<std::string> allowed_leaks;
    // -E in order: "NAME=VALUE", or "NAME" for its value in cgrun's environment.
    std::vector<std::string> setenv;
    // --uid, --gid as given (a name or a number); resolve_run_options() turns them into
    // opts.run_as.
    std::optional<std::string> run_user;
    std::optional<std::string> run_group;
};

// Either a command line or the one-line problem with it (without the "cgrun: " prefix).
struct parse_result {
    command_line cmd;
    std::optional<std::string> problem;
};

// args[0] is the program name. Options end at "--" or at the first non-option, which
// starts COMMAND (so COMMAND's own options are never taken for cgrun's). As in timeout(1),
// `cgrun DURATION COMMAND...`: without -t, of two or more operands a first one that parses
// as a DURATION is the timeout. Options that only one method honours imply it: --user,
// --system, --slice and --unit the scope method, --cgroup-parent the cgroup method; with
// another -m they are a usage error.
[[nodiscard]] parse_result parse_command_line(std::span<const std::string_view> args);

// What the command line names but only the host can say, for a run: --uid/--gid names and
// numbers become opts.run_as; opts.env becomes `environment` (cgrun's) with, for --uid of a
// user in the passwd database, HOME, SHELL, USER and LOGNAME of that user (as systemd-run
// sets them), then the -E settings (a NAME alone takes its value from `environment`, empty
// if unset, as systemd-run). opts.env stays nullopt when neither changes anything. The
// one-line problem if a name is unknown.
[[nodiscard]] std::optional<std::string> resolve_run_options(command_line& cmd, const char* const* environment);

[[nodiscard]] std::string_view help_text() noexcept;

} // namespace cgrun::tool
