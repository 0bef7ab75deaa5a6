// A program that uses libcgrun as a packager's user would: with only the flags that
// pkg-config (or CMake's find_package) hands it, against a staged install.

#include <cgrun/cgrun.hpp>

#include <cstdio>
#include <string>

int main()
{
    cgrun::options o;
    o.argv = {"sh", "-c", "exit 7"};
    o.method = cgrun::method::pgroup; // works anywhere, as any user
    auto r = cgrun::run(o);
    if (!r) {
        std::fprintf(stderr, "consumer: %s\n", r.error().message().c_str());
        return 1;
    }
    std::printf("cgrun %s: %s exited %d\n", CGRUN_VERSION,
                std::string(cgrun::to_string(r->used)).c_str(), r->exit_code.value_or(-1));
    return r->exit_code == 7 ? 0 : 1;
}
