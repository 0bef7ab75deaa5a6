#!/bin/bash
# bench/run.sh [-B BUILDDIR] [-o RESULTS.json] [--quick] [--host-only | --systemd-only]
#              [-- EXTRA ARGS for `cgrun-bench run`]
#
# Builds cgrun-bench and the cgrun CLI (meson, -Dbench=true -Dtool=true), runs the host
# part directly and the systemd part inside a unit of a real systemd
# (tests/with-systemd.sh), then prints the results as markdown tables on stdout and writes
# them, with the targets and PASS/MISS, to RESULTS.json (default BUILDDIR/bench/results.json).
# Progress goes to stderr. A full run takes about 10 minutes on 2 cores; --quick a minute.
#
#   BUILDDIR  default $BENCH_BUILDDIR, else <source>/build-bench (created if missing;
#             an existing build dir gets -Dbench=true -Dtool=true if it lacks them)
#
# Exit status: 0 when everything ran (targets may be MISSed: see the table), 1 when a part
# failed, 2 on a usage error. Without root or a systemd to boot, the systemd part is
# skipped (with-systemd.sh exits 77) and reported as "not run".

set -uo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P) || exit 1
src=$(dirname -- "$here")
builddir=${BENCH_BUILDDIR:-$src/build-bench}
out=''
parts=(host systemd)
extra=()

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
    case $1 in
        -B) (($# >= 2)) || usage; builddir=$2; shift 2 ;;
        -o) (($# >= 2)) || usage; out=$2; shift 2 ;;
        --quick) extra+=(--quick); shift ;;
        --host-only) parts=(host); shift ;;
        --systemd-only) parts=(systemd); shift ;;
        --) shift; extra+=("$@"); break ;;
        -h | --help) usage ;;
        *) usage ;;
    esac
done
[[ $builddir == /* ]] || builddir=$PWD/$builddir
[[ -z $out || $out == /* ]] || out=$PWD/$out

log() { echo "run.sh: $*" >&2; }

# --- build -----------------------------------------------------------------------------
if [[ ! -f $builddir/build.ninja ]]; then
    log "configuring $builddir"
    meson setup "$builddir" "$src" --wrap-mode=nodownload -Dbench=true -Dtool=true -Dtests=false >&2 || exit 1
else
    opts=$(meson introspect "$builddir" --buildoptions 2>/dev/null |
        python3 -c 'import json,sys; o={x["name"]: x["value"] for x in json.load(sys.stdin)}; print(str(o.get("bench")).lower(), str(o.get("tool")).lower())')
    if [[ $opts != "true true" ]]; then
        log "enabling -Dbench=true -Dtool=true in $builddir"
        meson configure "$builddir" -Dbench=true -Dtool=true >&2 || exit 1
    fi
fi
ninja -C "$builddir" bench/cgrun-bench tools/cgrun >&2 || exit 1
bench=$builddir/bench/cgrun-bench
cgrun=$builddir/tools/cgrun
resdir=$builddir/bench
out=${out:-$resdir/results.json}

cg2=$(awk '{ for (i = 7; i < NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' \
    /proc/self/mountinfo)
before=$(ls -d "$cg2"/cgrun-* 2>/dev/null | sort)
load=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before the run: $load (other work on the machine skews the figures; ratios are what count)"

cd "$src" || exit 1
status=0
inputs=()

# --- host part -----------------------------------------------------------------------------
if [[ " ${parts[*]} " == *" host "* ]]; then
    log "host part: $bench run --env host ${extra[*]}"
    if "$bench" run --env host --cgrun "$cgrun" "${extra[@]}" >"$resdir/host.json.part"; then
        mv "$resdir/host.json.part" "$resdir/host.json"
        inputs+=("$resdir/host.json")
    else
        log "the host part failed"
        status=1
    fi
fi

# --- systemd part: inside a unit of a real systemd ------------------------------------------
if [[ " ${parts[*]} " == *" systemd "* ]]; then
    log "systemd part: tests/with-systemd.sh $bench run --env systemd ${extra[*]}"
    "$src/tests/with-systemd.sh" "$bench" run --env systemd --cgrun "$cgrun" "${extra[@]}" >"$resdir/systemd.json.part"
    rc=$?
    if ((rc == 0)); then
        mv "$resdir/systemd.json.part" "$resdir/systemd.json"
        inputs+=("$resdir/systemd.json")
    elif ((rc == 77)); then
        log "systemd part skipped (no systemd to boot here)"
        rm -f "$resdir/systemd.json.part"
    else
        log "the systemd part failed (status $rc)"
        status=1
    fi
fi

((${#inputs[@]})) || exit 1
"$bench" report --out "$out" "${inputs[@]}" || exit 1
log "results: $out"

# --- nothing left behind -------------------------------------------------------------------
after=$(ls -d "$cg2"/cgrun-* 2>/dev/null | sort)
new=$(comm -13 <(echo "$before") <(echo "$after") | grep -v '^$' || true)
if [[ -n $new ]]; then
    log "WARNING: cgroups that appeared during the run and are still there (ours, or of concurrent runs):"
    echo "$new" | sed 's/^/    /' >&2
    status=1
else
    log "cleanup: no new cgrun-* cgroups left in $cg2"
fi
if pids=$(pgrep -x systemd); then
    log "note: systemd processes running now: $(echo $pids) (other sandboxes: $(ls -d "$cg2"/cgrun-sandbox.* 2>/dev/null | tr '\n' ' '))"
else
    log "cleanup: no systemd process left"
fi
exit "$status"
