#!/bin/bash
# Installs the build into a staging directory (meson install --destdir) and builds a tiny
# consumer against it the way a packager's user would.
#
# usage: consumer_test.sh pkg-config MESON BUILD_DIR CXX SANITIZE
#   pkg-config: with only the staged cgrun.pc visible (no libsystemd.pc, as on a host
#   without libsystemd-dev), `pkg-config --cflags --libs cgrun` must work, --static must
#   not add -lsystemd, and the consumer must compile, link and run.
# Exit 77 (skip) when a tool it needs is missing.
set -euo pipefail

kind=$1 meson=$2 build=$3 cxx=$4 sanitize=$5
here=$(cd "$(dirname "$0")" && pwd)

stage=$(mktemp -d "${TMPDIR:-/tmp}/cgrun-packaging-XXXXXX")
trap 'rm -rf "$stage"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }

"$meson" install -C "$build" --no-rebuild --destdir "$stage/root" >"$stage/install.log" 2>&1 ||
    { cat "$stage/install.log" >&2; fail "meson install --destdir failed"; }

pc=$(find "$stage/root" -name cgrun.pc -print -quit)
[ -n "$pc" ] || fail "no cgrun.pc installed"
libdir=$(dirname "$(dirname "$pc")")
san_flags=()
[ "$sanitize" = none ] || san_flags=("-fsanitize=$sanitize")

run_consumer() {
    local out
    out=$(LD_LIBRARY_PATH="$libdir" "$1") || fail "the consumer failed: $out"
    echo "$out"
    [[ $out == *"pgroup exited 7"* ]] || fail "unexpected consumer output: $out"
}

case $kind in
pkg-config)
    command -v pkg-config >/dev/null || skip "no pkg-config"
    export PKG_CONFIG_LIBDIR=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$stage/root
    unset PKG_CONFIG_PATH
    grep -n '^Requires' "$pc" >&2 && fail "cgrun.pc requires other packages (the library dlopen()s libsystemd)"
    flags=$(pkg-config --cflags --libs cgrun) || fail "pkg-config --cflags --libs cgrun failed"
    static=$(pkg-config --static --libs cgrun) || fail "pkg-config --static --libs cgrun failed"
    echo "flags: $flags"
    echo "static: $static"
    [[ " $static " != *" -lsystemd "* ]] || fail "--static adds -lsystemd"
    # shellcheck disable=SC2086 # the flags are words
    "$cxx" -std=c++20 "${san_flags[@]}" -o "$stage/consumer" "$here/consumer.cpp" $flags ||
        fail "the consumer does not build with pkg-config's flags"
    run_consumer "$stage/consumer"
    ;;
*)
    echo "usage: consumer_test.sh pkg-config MESON BUILD_DIR CXX SANITIZE" >&2
    exit 2
    ;;
esac
