#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "support.hpp"

#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <cstring>

int crash_helper(int argc, char** argv); // scope_test.cpp
int delegated_scope_helper(int argc, char** argv); // delegated_scope_test.cpp

namespace {
// Prints this process's open fds, without the one used to list them.
int print_fds()
{
    DIR* d = ::opendir("/proc/self/fd");
    if (!d)
        return 1;
    std::vector<int> fds;
    while (struct dirent* e = ::readdir(d))
        if (e->d_name[0] != '.' && std::atoi(e->d_name) != ::dirfd(d))
            fds.push_back(std::atoi(e->d_name));
    ::closedir(d);
    std::sort(fds.begin(), fds.end());
    for (int fd : fds)
        std::printf("%d ", fd);
    std::printf("\n");
    return 0;
}
} // namespace

int main(int argc, char** argv)
{
    // Self re-exec for the crash-backstop test: a spawner that dies by SIGKILL.
    if (argc >= 2 && std::strcmp(argv[1], "--crash-helper") == 0)
        return crash_helper(argc, argv);
    if (argc >= 2 && std::strcmp(argv[1], "--delegated-scope-helper") == 0)
        return delegated_scope_helper(argc, argv);
    if (argc >= 2 && std::strcmp(argv[1], "--print-fds") == 0)
        return print_fds();
    if (auto why = cgrun::test::missing_precondition()) {
        std::fprintf(stderr, "SKIP: %s\n", why->c_str());
        return 77;
    }
    doctest::Context ctx(argc, argv);
    return ctx.run();
}
