#!/bin/bash
# The main job: a command whose grandchild escapes with setsid, run under GNU timeout
# and under cgrun with the same 2 s timeout. timeout(1) leaves the escapee running;
# cgrun kills it, leaves nothing behind, and says how (JSON report).
set -euo pipefail
cd "$(dirname "$0")/.."
inner=false
[ "${1-}" = --cgrun-only ] && inner=true # the part that runs inside the test systemd
$inner || tools/bootstrap.sh
cgrun=$PWD/build/tools/cgrun
# Inside the checkout, not /tmp: the test systemd has a private /tmp.
work=$(mktemp -d "$PWD/build/demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The escaping tree: a setsid daemon that records its pid, and a main process that sleeps.
tree=(sh -c "setsid sh -c 'echo \$\$ > $work/escapee; exec sleep 600' & exec sleep 600")

state() { # "alive" or "gone"
    local s
    s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)
    if [ -n "$s" ] && [ "$s" != Z ]; then echo alive; else echo gone; fi
}

run_cgrun() {
    local rc=0 pid
    "$cgrun" -v -t 2 --json "$work/report.json" -- "${tree[@]}" || rc=$?
    pid=$(cat "$work/escapee")
    echo "   exit status $rc; setsid escapee $pid is $(state "$pid")"
    echo "   report:"
    sed 's/^/     /' "$work/report.json"
    [ "$rc" = 124 ] && [ "$(state "$pid")" = gone ]
}

if $inner; then
    run_cgrun
    exit
fi

echo "== GNU timeout 2s: ${tree[*]}"
rc=0
timeout 2 "${tree[@]}" || rc=$?
pid=$(cat "$work/escapee")
echo "   exit status $rc; setsid escapee $pid is $(state "$pid")"
kill -9 "$pid" 2>/dev/null || true # clean up what timeout(1) could not reach

echo
echo "== cgrun -t 2 on this host (PID 1 is not systemd here: auto falls back to a cgroup)"
run_cgrun
mount=$(awk '$9=="cgroup2"{print $5; exit}' /proc/self/mountinfo)
echo "   cgrun-* cgroups left under $mount: $(find "$mount" -maxdepth 1 -name 'cgrun-*' | wc -l)"

echo
echo "== cgrun -t 2 under a real systemd (booted in namespaces by tests/with-systemd.sh: auto picks a scope)"
tests/with-systemd.sh tools/demo.sh --cgrun-only
echo
echo "Nothing survived cgrun."
