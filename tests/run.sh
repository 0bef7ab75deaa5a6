#!/bin/bash
# Runs every test suite (unit, cgroup, systemd, cli) in a normal and in an ASan+UBSan
# build, and builds a release and a clang variant (and runs their unit tests). Installs what
# is missing first. Needs root (cgroups, the test systemd).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/bootstrap.sh

echo "== tests (build/)"
meson test -C build --print-errorlogs

echo "== release build (build-release/: -O3 and werror, as a packager builds it), unit tests"
[ -f build-release/build.ninja ] ||
    meson setup build-release --wrap-mode=nodownload --buildtype=release >/dev/null
ninja -C build-release >/dev/null
meson test -C build-release --print-errorlogs --suite unit

echo "== clang build (build-clang/: clang++ and werror, as the library's users may build it), unit tests"
[ -f build-clang/build.ninja ] ||
    CXX=clang++ meson setup build-clang --wrap-mode=nodownload >/dev/null
ninja -C build-clang >/dev/null
meson test -C build-clang --print-errorlogs --suite unit

echo "== tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
[ -f build-asan/build.ninja ] ||
    meson setup build-asan --wrap-mode=nodownload -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbench=false >/dev/null
ninja -C build-asan >/dev/null
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs
