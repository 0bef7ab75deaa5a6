#!/bin/bash
# Installs what is missing (Debian 12, as root) and builds cgrun into build/.
# Idempotent: a second run installs nothing and rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(meson ninja-build pkgconf g++ clang make libsystemd-dev nlohmann-json3-dev doctest-dev cmake
          systemd dbus-daemon dbus-bin util-linux procps python3 python3-jsonschema git man-db)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "bootstrap: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

# Debian's registry is all these machines reach: subprojects/ wraps are for other systems.
[ -f build/build.ninja ] || meson setup build --wrap-mode=nodownload >/dev/null
ninja -C build >/dev/null
