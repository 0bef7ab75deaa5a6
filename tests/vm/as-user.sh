#!/bin/bash
# as-user.sh USER PYTHON TEST_SCRIPT CGRUN [ARGS...]
#
# Runs `with-vm.sh --user USER -- PYTHON TEST_SCRIPT CGRUN ARGS...` from world-readable
# copies of TEST_SCRIPT and CGRUN in a fresh /tmp directory, which is also the working
# directory. The guest's USER then never needs to enter the checkout, which may sit where
# other users cannot (a clone in root's home, mode 0700: `cd: .../build: Permission
# denied` before). with-vm.sh keeps the /tmp entry holding $PWD visible in the guest.
# CGRUN must be self-contained (the default static_tool build links libcgrun in). The
# report validator (tests/report_schema.py) and the schemas it reads are copied along.
set -u
[[ $# -ge 4 ]] || { echo "usage: as-user.sh USER PYTHON TEST_SCRIPT CGRUN [ARGS...]" >&2; exit 2; }
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P) || exit 1
user=$1 python=$2 script=$3 cgrun=$4
shift 4

dir=$(mktemp -d /tmp/cgrun-vm-user.XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
cp -- "$script" "$dir/$(basename -- "$script")" && cp -- "$cgrun" "$dir/cgrun" &&
    cp -- "$here/../report_schema.py" "$here/../../doc/report.schema.json" "$here/../../doc/check.schema.json" "$dir/" &&
    chmod 0755 "$dir" "$dir/cgrun" && chmod 0644 "$dir"/*.py "$dir"/*.json ||
    { echo "as-user.sh: cannot copy the test into $dir" >&2; exit 1; }
cd "$dir" || exit 1
"$here/../with-vm.sh" --user "$user" -- "$python" "$dir/$(basename -- "$script")" "$dir/cgrun" "$@"
