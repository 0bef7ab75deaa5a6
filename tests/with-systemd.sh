#!/bin/bash
# with-systemd.sh [--] CMD [ARGS...]
#
# Runs CMD inside a unit (a transient service with Delegate=yes) of a REAL
# systemd and exits with CMD's exit status; stdin/stdout/stderr are passed
# through (systemd-run --pipe hands our own file descriptors to the service).
#
#  * PID 1 is systemd: CMD runs via systemd-run on the host's systemd.
#  * Otherwise a private systemd is booted as PID 1 of its own namespaces
#    (see machine.md, "A real systemd for tests") in a fresh child cgroup
#    cgrun-sandbox.<pid of this script> of the cgroup2 mount, with
#    tests/systemd/units as its ONLY unit path. It is torn down on exit; a
#    sandbox left behind by a killed run is removed by the next run.
#
# Exit status: CMD's, or
#   77     a precondition is missing (not root; no cgroup2 mount; no unshare,
#          nsenter, systemd-run or busctl; no /lib/systemd/systemd): meson "skip"
#   1      the sandbox could not be set up although the preconditions are met
#   2      usage error
#   126/127  CMD is not executable / not found
#   255    CMD was killed by a signal (systemd-run cannot tell which)
#   128+N  this script was stopped by signal N (HUP, INT, TERM)
#
# Environment given to CMD: PATH, ASAN_OPTIONS, UBSAN_OPTIONS, LSAN_OPTIONS,
# MSAN_OPTIONS, TSAN_OPTIONS, MALLOC_PERTURB_, MESON_TEST_ITERATION and every
# exported CGRUN_* variable; nothing else. CMD runs as root in $PWD. In the
# sandbox /run and /tmp are private tmpfs (the /tmp/<dir> holding $PWD, CMD or
# the unit directory is bind-mounted into it); the rest of the host's file
# system is shared, /proc/sys is read-only, the network namespace has only lo.
#
# Knobs: CGRUN_SANDBOX_LOG=console|debug  the sandbox's systemd logs to our
#                                         stderr (debug: at debug level)
#        CGRUN_SANDBOX_TIMEOUT=<seconds>  boot timeout (default 15)
#
# NEVER point systemd at its default unit path here: a full boot on this
# machine runs units against the host's file system (it emptied /tmp once).

set -u
shopt -s nullglob
# closed standard descriptors would break the hand-over to systemd-run --pipe
[[ -e /proc/self/fd/0 ]] || exec </dev/null
[[ -e /proc/self/fd/1 ]] || exec >/dev/null
[[ -e /proc/self/fd/2 ]] || exec 2>/dev/null

prog=with-systemd.sh
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P) || exit 1
units=$here/systemd/units
systemd_bin=/lib/systemd/systemd

skip() { echo "$prog: SKIP: $*" >&2; exit 77; }
fail() { echo "$prog: ERROR: $*" >&2; exit 1; }

# --- arguments -----------------------------------------------------------------
[[ ${1-} == -- ]] && shift
if (( $# == 0 )) || [[ $1 == -h || $1 == --help ]]; then
    echo "usage: $prog [--] CMD [ARGS...]" >&2
    exit 2
fi
cmd=$1
shift
if [[ $cmd != */* ]]; then
    resolved=$(type -P -- "$cmd") || { echo "$prog: $cmd: command not found" >&2; exit 127; }
    cmd=$resolved
fi
[[ $cmd == /* ]] || cmd=$PWD/$cmd
[[ -e $cmd ]] || { echo "$prog: $cmd: No such file or directory" >&2; exit 127; }
[[ -f $cmd && -x $cmd ]] || { echo "$prog: $cmd: not an executable file" >&2; exit 126; }

# systemd expands $VAR, ${VAR} and $$ in a service's command line: escape.
args=("${@//\$/\$\$}")

# --- systemd-run options, environment for CMD -----------------------------------
# Type=oneshot: for other types systemd counts death by SIGTERM, SIGINT, SIGHUP
# or SIGPIPE as success and systemd-run then exits 0 (oneshot: 255, as for any
# signal); it also means CMD's unit stays "activating" while CMD runs.
run_args=(--wait --pipe --quiet --collect --service-type=oneshot -p TimeoutStartSec=infinity
    -p Delegate=yes -p "WorkingDirectory=$PWD")
while read -r name; do
    case $name in
        PATH | ASAN_OPTIONS | UBSAN_OPTIONS | LSAN_OPTIONS | MSAN_OPTIONS | TSAN_OPTIONS | \
            MALLOC_PERTURB_ | MESON_TEST_ITERATION | CGRUN_*)
            run_args+=(-E "$name=${!name}") ;;
    esac
done < <(compgen -e)

(( EUID == 0 )) || skip "needs root"
for tool in systemd-run busctl; do
    type -P "$tool" >/dev/null || skip "$tool is not installed"
done

# --- a host systemd: use it -----------------------------------------------------
if [[ $(cat /proc/1/comm 2>/dev/null) == systemd && -d /run/systemd/system ]]; then
    exec systemd-run "${run_args[@]}" -- "$cmd" "${args[@]}"
fi

# --- otherwise: boot a private one ----------------------------------------------
for tool in unshare nsenter mount umount mountpoint; do
    type -P "$tool" >/dev/null || skip "$tool is not installed"
done
[[ -x $systemd_bin ]] || skip "$systemd_bin is not installed"
[[ -f $units/test.target ]] || fail "unit directory $units is incomplete"
cg2=$(awk '{ for (i = 7; i < NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' \
    /proc/self/mountinfo)
[[ -n $cg2 && -d $cg2 ]] || skip "no cgroup2 file system is mounted"

log=null
sd_opts=(--show-status=no)
case ${CGRUN_SANDBOX_LOG-} in
    '' | null) ;;
    console | debug)
        log=console
        sd_opts+=(--log-color=no --default-standard-output=inherit --default-standard-error=inherit)
        [[ $CGRUN_SANDBOX_LOG == debug ]] && sd_opts+=(--log-level=debug) ;;
    *) fail "CGRUN_SANDBOX_LOG must be console, debug or null" ;;
esac

timeout=${CGRUN_SANDBOX_TIMEOUT:-15}
[[ $timeout =~ ^[1-9][0-9]*$ ]] || fail "CGRUN_SANDBOX_TIMEOUT must be a whole number of seconds"

# nap SECONDS: sleep without a fork (read on a pipe nobody writes to).
exec {nap_fd}<> <(:)
nap() { read -r -t "$1" -u "$nap_fd"; }

# Kill everything in cgroup $1, then remove it and its sub-cgroups depth-first.
destroy_cgroup() {
    local d=$1 end i
    [[ -d $d ]] || return 0
    end=$((${EPOCHREALTIME/[.,]/} + 5000000))
    while :; do
        if [[ -e $d/cgroup.kill ]]; then
            echo 1 >"$d/cgroup.kill" 2>/dev/null
        else                             # kernel < 5.14
            # shellcheck disable=SC2038 # pids only
            find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        fi
        grep -qx 'populated 0' "$d/cgroup.events" 2>/dev/null && break
        [[ -e $d/cgroup.events ]] || break
        (( ${EPOCHREALTIME/[.,]/} < end )) || break
        nap 0.002
    done
    for ((i = 0; i < 100; i++)); do
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
        [[ -d $d ]] || return 0
        nap 0.01
    done
    echo "$prog: warning: could not remove cgroup $d" >&2
    return 1
}

# Remove sandboxes whose script is gone (SIGKILLed, say). Ours may be a stale
# one too: a dead script that had our pid.
for d in "$cg2"/cgrun-sandbox.*; do
    owner=${d##*.}
    [[ -d $d && $owner =~ ^[0-9]+$ ]] || continue
    if (( owner != $$ )) && grep -qa 'with-systemd\.sh' "/proc/$owner/cmdline" 2>/dev/null; then
        continue                         # alive: another test's sandbox
    fi
    destroy_cgroup "$d"
done

sb=$cg2/cgrun-sandbox.$$
upid='' spid='' rpid=''
# shellcheck disable=SC2317 # called from the EXIT trap
teardown() {
    local i st
    trap '' HUP INT TERM
    destroy_cgroup "$sb"
    if [[ -n $upid ]]; then
        # Let unshare reap the sandbox's PID 1 (no zombie left to the host's
        # init), then reap unshare. Killing it is safe (our unreaped child,
        # its pid cannot be reused) and also kills that PID 1 (--kill-child).
        for ((i = 0; i < 500; i++)); do
            st=Z
            read -r _ _ st _ 2>/dev/null <"/proc/$upid/stat"
            [[ $st == Z ]] && break
            nap 0.002
        done
        kill -KILL "$upid" 2>/dev/null
        { wait "$upid"; } 2>/dev/null
    fi
    if [[ -n $rpid ]]; then
        kill -KILL "$rpid" 2>/dev/null
        { wait "$rpid"; } 2>/dev/null
    fi
}
trap teardown EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# $sb becomes the root of the sandbox's cgroup namespace (systemd's "/").
# unshare is moved back to our cgroup as soon as it has forked: so $sb holds
# only the sandbox, and unshare survives the cgroup.kill to reap its PID 1.
mkdir "$sb" || fail "cannot create cgroup $sb"
mycg=$(sed -n 's/^0:://p' /proc/$$/cgroup)

# /tmp/<entry>s to keep visible in the private /tmp.
keep=''
for p in "$PWD" "$cmd" "$units"; do
    if [[ $p == /tmp/?* ]]; then
        p=${p#/tmp/}
        keep+=${p%%/*}$'\n'
    fi
done

# systemd as PID 1 logs only to /dev/console and only if that is a tty (and
# resets it): in console mode a pty whose output is copied to our stderr is put
# there (or, without python3, our stderr if that is a tty).
pty_relay='
import os, subprocess, termios
m, s = os.openpty()
a = termios.tcgetattr(s)
a[1] &= ~termios.OPOST
termios.tcsetattr(s, termios.TCSANOW, a)
subprocess.run(["mount", "--bind", os.ttyname(s), "/dev/console"], check=True)
os.close(os.open("/run/cgrun-console-ready", os.O_CREAT | os.O_WRONLY))
while True:
    try:
        d = os.read(m, 65536)
    except OSError:
        break
    if not d:
        break
    os.write(2, d)
'

# Runs as PID 1 of the new namespaces and becomes systemd: $1 = unit path,
# $2... = systemd's command line; env KEEP, LOG, PTY_RELAY as above.
# shellcheck disable=SC2016 # expanded by that shell
inner='
set -e
mount --make-rprivate /
# global kernel knobs (kernel.core_pattern...) are not namespaced: hands off
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
while mountpoint -q /sys/fs/cgroup; do umount -l /sys/fs/cgroup; done
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# the real root cgroup has no cgroup.events: never give systemd the host root
if [ ! -e /sys/fs/cgroup/cgroup.events ]; then
    echo "with-systemd.sh: the sandbox cgroup namespace is rooted at the host root" >&2
    exit 1
fi
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir /run/cgrun-host-tmp
mount --rbind /tmp /run/cgrun-host-tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
printf "%s\n" "$KEEP" | while IFS= read -r k; do
    [ -n "$k" ] && [ ! -e "/tmp/$k" ] || continue
    if [ -d "/run/cgrun-host-tmp/$k" ]; then mkdir "/tmp/$k"; else : >"/tmp/$k"; fi
    mount --rbind "/run/cgrun-host-tmp/$k" "/tmp/$k"
done
umount -l /run/cgrun-host-tmp
rmdir /run/cgrun-host-tmp
# never the host console
if [ "$LOG" != console ]; then
    mount --bind /dev/null /dev/console
elif command -v python3 >/dev/null; then
    python3 -c "$PTY_RELAY" </dev/null &
    i=0
    while [ ! -e /run/cgrun-console-ready ] && [ $i -lt 1000 ]; do sleep 0.005; i=$((i + 1)); done
    rm -f /run/cgrun-console-ready
elif [ -t 2 ]; then
    mount --bind /proc/self/fd/2 /dev/console
else
    echo "with-systemd.sh: no log: stderr is no tty and there is no python3 for a pty" >&2
    mount --bind /dev/null /dev/console
fi
# wait until unshare has left our root cgroup (its pid shows as 0 here)
i=0
while grep -qx 0 /sys/fs/cgroup/cgroup.procs && [ $i -lt 400 ]; do sleep 0.005; i=$((i + 1)); done
unit_path=$1
shift
exec env -i container=other SYSTEMD_UNIT_PATH="$unit_path" \
    SYSTEMD_GENERATOR_PATH=/run/cgrun-no-generators \
    SYSTEMD_ENVIRONMENT_GENERATOR_PATH=/run/cgrun-no-generators \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
'

# If this script is SIGKILLed, unshare dies with it (setpriv --pdeathsig) and
# takes the sandbox's PID 1, hence the whole sandbox, along (--kill-child):
# only an empty cgroup is left for the next run to remove.
pdeath=()
type -P setpriv >/dev/null && pdeath=(setpriv --pdeathsig KILL)
start_sandbox() {
    local f
    echo "$BASHPID" >"$sb/cgroup.procs" || exit 1
    for f in "/proc/$BASHPID/fd"/*; do     # no inherited descriptors
        f=${f##*/}
        (( f > 2 )) && eval "exec $f>&-" 2>/dev/null
    done
    KEEP=$keep LOG=$log PTY_RELAY=$pty_relay exec "${pdeath[@]}" \
        unshare --mount --pid --cgroup --uts --ipc --net --fork --kill-child --mount-proc \
        /bin/sh -c "$inner" sh "$units" \
        "$systemd_bin" --system --unit=test.target --log-target="$log" "${sd_opts[@]}"
}
if [[ $log == console ]]; then
    start_sandbox </dev/null >/dev/null &
else
    start_sandbox </dev/null >/dev/null 2>&1 &
fi
upid=$!

start=${EPOCHREALTIME/[.,]/}
deadline=$((start + timeout * 1000000))
boot_failed() {
    local st=''
    if ! kill -0 "$upid" 2>/dev/null; then
        wait "$upid"
        st=" (sandbox exited with status $?)"
        upid=''
    fi
    fail "the systemd sandbox did not boot: $*$st; rerun with CGRUN_SANDBOX_LOG=console to see its log"
}

# 1. The sandbox's PID 1 as seen from here: the child of unshare that is in
#    other pid and cgroup namespaces than ours (so unshare did unshare).
my_pidns=$(readlink /proc/self/ns/pid) my_cgns=$(readlink /proc/self/ns/cgroup)
while [[ -z $spid ]]; do
    kill -0 "$upid" 2>/dev/null || boot_failed "unshare died"
    kids=$(cat "/proc/$upid/task/$upid/children" 2>/dev/null || pgrep -P "$upid")
    for c in $kids; do
        if [[ $(readlink "/proc/$c/ns/pid") != "$my_pidns" &&
            $(readlink "/proc/$c/ns/cgroup") != "$my_cgns" ]]; then
            spid=$c
        fi
    done
    (( ${EPOCHREALTIME/[.,]/} < deadline )) || boot_failed "no process in its namespaces after ${timeout}s"
    [[ -n $spid ]] || nap 0.002
done
echo "$upid" >"$cg2$mycg/cgroup.procs" 2>/dev/null

# 2. systemd's private socket, then an answer on the system bus (this
#    socket-activates dbus.service, so it is up when CMD starts).
while :; do
    comm=''
    read -r comm 2>/dev/null <"/proc/$spid/comm"
    if [[ $comm == systemd &&
        -S /proc/$spid/root/run/systemd/private &&
        -S /proc/$spid/root/run/dbus/system_bus_socket ]] &&
        nsenter -t "$spid" -a busctl --system status >/dev/null 2>&1; then
        break
    fi
    kill -0 "$spid" 2>/dev/null || boot_failed "its PID 1 exited"
    (( ${EPOCHREALTIME/[.,]/} < deadline )) || boot_failed "not ready after ${timeout}s"
    nap 0.003
done
[[ -d /proc/$spid/root$PWD ]] || fail "the working directory $PWD is not visible in the sandbox"
[[ -x /proc/$spid/root$cmd ]] || fail "$cmd is not visible in the sandbox"
[[ $log == console ]] &&
    echo "$prog: sandbox $sb (PID 1 = $spid) ready after $(((${EPOCHREALTIME/[.,]/} - start) / 1000)) ms" >&2

# In the background, so that the HUP/INT/TERM traps run at once; the explicit
# redirection keeps stdin (background jobs get /dev/null otherwise).
nsenter -t "$spid" -a systemd-run "${run_args[@]}" -p DefaultDependencies=no -- "$cmd" "${args[@]}" <&0 &
rpid=$!
wait "$rpid"
rc=$?
rpid=''
exit "$rc"
