#!/bin/bash
# Installs the build into a staging directory (meson install --destdir) and builds a tiny
# consumer against it the way a packager's user would.
#
# usage: consumer_test.sh pkg-config|cmake|subproject MESON BUILD_DIR CXX SANITIZE [SOURCE_DIR]
#   pkg-config: with only the staged cgrun.pc visible (no libsystemd.pc, as on a host
#   without libsystemd-dev), `pkg-config --cflags --libs cgrun` must work, --static must
#   not add -lsystemd, and the consumer must compile, link and run.
#   cmake: find_package(cgrun 0.1) in a CMake project finds the staged package (and a
#   version it is not compatible with is refused), the consumer links cgrun::cgrun and runs.
#   subproject: a parent meson project with SOURCE_DIR as subprojects/cgrun gets the
#   library only (no tool, none of cgrun's tests in its `meson test`), its own targets get
#   no -Werror (a file of it that warns still builds), and its consumer runs.
# Exit 77 (skip) when a tool it needs is missing.
set -euo pipefail

kind=$1 meson=$2 build=$3 cxx=$4 sanitize=$5
here=$(cd "$(dirname "$0")" && pwd)

stage=$(mktemp -d "${TMPDIR:-/tmp}/cgrun-packaging-XXXXXX")
trap 'rm -rf "$stage"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }

stage_install() {
    "$meson" install -C "$build" --no-rebuild --destdir "$stage/root" >"$stage/install.log" 2>&1 ||
        { cat "$stage/install.log" >&2; fail "meson install --destdir failed"; }
    pc=$(find "$stage/root" -name cgrun.pc -print -quit)
    [ -n "$pc" ] || fail "no cgrun.pc installed"
    libdir=$(dirname "$(dirname "$pc")")
}

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
    stage_install
    [ "${CGRUN_TOOL:-1}" = 0 ] ||   # the completion comes with the tool
        [ -n "$(find "$stage/root" -path '*/share/bash-completion/completions/cgrun' -print -quit)" ] ||
        fail "no bash completion installed as share/bash-completion/completions/cgrun"
    for schema in report.schema.json check.schema.json; do
        [ -n "$(find "$stage/root" -path "*/share/cgrun/$schema" -print -quit)" ] ||
            fail "no JSON Schema installed as share/cgrun/$schema"
    done
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
cmake)
    command -v cmake >/dev/null || skip "no cmake (apt-get install cmake)"
    stage_install
    prefix=$("$meson" introspect "$build" --buildoptions |
        python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
    version=$("$meson" introspect "$build" --projectinfo |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
    src=$stage/cmake-consumer
    mkdir -p "$src"
    cp "$here/consumer.cpp" "$src/"
    cat >"$src/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.16)
project(cgrun_consumer CXX)
find_package(cgrun 99 QUIET)
if(cgrun_FOUND)
  message(FATAL_ERROR "find_package(cgrun 99) accepted cgrun \${cgrun_VERSION}")
endif()
find_package(cgrun ${version%.*} REQUIRED)
message(STATUS "found cgrun \${cgrun_VERSION} in \${cgrun_DIR}")
add_executable(consumer consumer.cpp)
target_link_libraries(consumer PRIVATE cgrun::cgrun)
CMAKE
    cmake -S "$src" -B "$src/build" -DCMAKE_PREFIX_PATH="$stage/root$prefix" \
        -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF \
        -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_FLAGS="${san_flags[*]}" \
        >"$stage/cmake.log" 2>&1 || { cat "$stage/cmake.log" >&2; fail "cmake configure failed"; }
    grep 'found cgrun' "$stage/cmake.log"
    grep -q "found cgrun $version in $stage/root" "$stage/cmake.log" ||
        fail "find_package(cgrun) did not find the staged package"
    cmake --build "$src/build" >"$stage/cmake-build.log" 2>&1 ||
        { cat "$stage/cmake-build.log" >&2; fail "the CMake consumer does not build"; }
    run_consumer "$src/build/consumer"
    ;;
subproject)
    source_dir=$6
    parent=$stage/parent
    mkdir -p "$parent/subprojects"
    ln -s "$source_dir" "$parent/subprojects/cgrun"
    cp "$here/consumer.cpp" "$parent/"
    printf 'int warns() { int unused; return 0; }\n' >"$parent/warns.cpp"
    cat >"$parent/meson.build" <<'PARENT'
project('parent', 'cpp', default_options : ['cpp_std=c++20', 'warning_level=2'])
cgrun_dep = dependency('cgrun', fallback : ['cgrun', 'cgrun_dep'])
consumer = executable('consumer', 'consumer.cpp', 'warns.cpp', dependencies : cgrun_dep)
test('consumer', consumer)
PARENT
    # Only the staged build may answer dependency('cgrun') with a package: none here.
    export PKG_CONFIG_PATH=
    "$meson" setup "$parent/build" "$parent" --wrap-mode=nodownload --force-fallback-for=cgrun \
        >"$stage/setup.log" 2>&1 || { cat "$stage/setup.log" >&2; fail "meson setup of the parent failed"; }
    ninja -C "$parent/build" >"$stage/ninja.log" 2>&1 ||
        { cat "$stage/ninja.log" >&2; fail "the parent does not build"; }
    tests=$("$meson" test -C "$parent/build" --no-rebuild --list 2>/dev/null)
    echo "tests of the parent: $tests"
    [ "$tests" = consumer ] || fail "cgrun's tests show up in the parent's meson test: $tests"
    targets=$("$meson" introspect "$parent/build" --targets |
        python3 -c 'import json,sys; print(" ".join(sorted(t["name"] + ":" + t["type"] for t in json.load(sys.stdin) if t["build_by_default"])))')
    echo "targets built by default: $targets"
    [ "$targets" = "cgrun:shared library consumer:executable" ] ||
        fail "a parent that did not ask gets more than the library: $targets"
    python3 - "$parent/build/compile_commands.json" <<'PY' || fail "werror reached the parent"
import json, sys
bad = [c["file"] for c in json.load(open(sys.argv[1]))
       if "subprojects/cgrun/" not in c["file"] and "-Werror" in c["command"]]
print("parent files built with -Werror:", bad or "none")
sys.exit(1 if bad else 0)
PY
    "$meson" test -C "$parent/build" --print-errorlogs >"$stage/test.log" 2>&1 ||
        { cat "$stage/test.log" >&2; fail "the parent's consumer test failed"; }
    ;;
*)
    echo "usage: consumer_test.sh pkg-config|cmake|subproject MESON BUILD_DIR CXX SANITIZE [SOURCE_DIR]" >&2
    exit 2
    ;;
esac
