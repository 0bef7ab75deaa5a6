#!/bin/bash
# oom-stress.sh [N] — N OOM-killed runs (default 50) per method in the QEMU guest of
# tests/with-vm.sh: a scope of the system manager, a cgroup under a delegated parent (as
# root) and a scope of a user manager. Each must report exit 137 and oom_killed true.
# The evidence for issue 13: systemd's OOMPolicy=stop used to race the report. Takes about
# 10 s per run under TCG. Exit status: 0 when every run passed, 1 otherwise, 77 (skip)
# where the guest cannot be had.
set -u
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo=$here/../..
n=${1:-50}
cgrun=${CGRUN:-$repo/build/tools/cgrun}
[ -x "$cgrun" ] || { echo "oom-stress.sh: build first ($cgrun missing)" >&2; exit 1; }
export CGRUN_VM_OOM_RUNS=$n CGRUN_VM_ONLY='OOM-kills|MemoryMax=50M under a delegated'
rc=0
"$repo/tests/with-vm.sh" /usr/bin/python3 "$here/enforcement_test.py" "$cgrun" root || rc=$?
"$repo/tests/with-vm.sh" --user cgtest -- /usr/bin/python3 "$here/enforcement_test.py" "$cgrun" user || rc=$((rc ? rc : $?))
exit $rc
