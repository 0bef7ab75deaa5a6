// The smallest library user: run a command under a timeout, with everything it starts
// contained, and print what happened.
//
// It runs a shell that leaves a setsid daemon behind and exits: the daemon is listed as a
// leftover and killed before run() returns. Exit status 0 when that is what happened.

#include <cgrun/cgrun.hpp>

#include <chrono>
#include <cstdio>
#include <string>

int main()
{
    cgrun::options o;
    o.argv = {"sh", "-c", "echo hello from $$; setsid sleep 300 </dev/null >/dev/null 2>&1 & exit 0"};
    o.timeout = std::chrono::seconds(30);
    o.kill.grace = std::chrono::seconds(2); // SIGTERM, 2 s, then SIGKILL of the tree

    auto r = cgrun::run(o); // spawn + wait (+ kill on timeout)
    if (!r) {
        std::fprintf(stderr, "run: %s\n", r.error().message().c_str());
        return 1;
    }
    auto how = cgrun::termination_of(*r);
    std::printf("method %s, %s, exit code %d, %d leftover(s), %d process(es) still running\n",
                std::string(cgrun::to_string(r->used)).c_str(),
                how ? std::string(cgrun::to_string(*how)).c_str() : "unknown", r->exit_code.value_or(-1),
                r->leftovers_total, r->remaining_processes);
    for (const auto& l : r->leftovers) {
        std::string what = l.command.empty() ? "?" : l.command[0];
        if (l.escaped_via)
            what += " (escaped via " + *l.escaped_via + ")";
        std::printf("  left behind and killed: pid %d %s\n", static_cast<int>(l.pid), what.c_str());
    }
    // The process group method cannot see a setsid escapee; every other method lists and kills it.
    bool listed = r->used == cgrun::method::pgroup || r->leftovers_total >= 1;
    return r->exit_code == 0 && r->remaining_processes == 0 && listed ? 0 : 1;
}
