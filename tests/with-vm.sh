#!/bin/bash
# with-vm.sh [--user NAME] [--] CMD [ARGS...]
#
# Boots a throwaway QEMU guest with a normally booted systemd (cgroup2 with the cpu,
# memory, pids... controllers, dbus, logind, user managers) and runs CMD in it; exits
# with CMD's exit status, CMD's stdout and stderr are passed through. For functional
# tests that need enforced limits or a non-root user with a systemd --user manager,
# which this machine's own cgroup2 cannot give (see shared docs vm-host.md). Under
# software emulation (TCG) everything is 10-60x slower: no timing from the guest means
# anything. Booting takes ~10 s (up to ~40 s on a busy host), so run many checks from
# one CMD (a script).
#
# The guest sees the host's / read-only (virtio-9p) under a writable overlay on tmpfs:
# host-built binaries run at the same paths, and nothing the guest writes reaches the
# host. /tmp and /run are fresh tmpfs (the /tmp/<entry> holding $PWD or CMD stays
# visible); the network has only lo.
#  * As root (default), CMD runs in $PWD in its own transient scope with Delegate=yes
#    (systemd-run --scope -p Delegate=yes), i.e. in a delegated cgroup of its own.
#  * With --user NAME, the user is created in the guest if needed (useradd -m), made
#    lingering (its systemd --user manager and user bus run), and CMD runs as that user
#    through `runuser -l` in a logind session (XDG_RUNTIME_DIR, DBUS_SESSION_BUS_ADDRESS
#    set), in $PWD.
# CMD's stdin is /dev/null. Environment given to CMD: PATH, ASAN_OPTIONS, UBSAN_OPTIONS,
# LSAN_OPTIONS, MSAN_OPTIONS, TSAN_OPTIONS, MALLOC_PERTURB_, MESON_TEST_ITERATION and
# every exported CGRUN_* variable, on top of root's or the user's login environment.
#
# What it needs is installed when missing (as root, with apt-get): qemu-system-x86,
# busybox-static, python3; the guest kernel is Debian's linux-image-<abi>-amd64 (the one
# linux-image-amd64 depends on), fetched with `apt-get download` once and kept unpacked in
# the cache directory (default: <repo>/build/vm-cache; CGRUN_VM_CACHE overrides it).
# The VM is torn down on every exit path; if this script is SIGKILLed, QEMU dies with it
# (parent-death signal) and the next run removes the stale run directory.
#
# Exit status: CMD's (128+N when it died of signal N), or
#   77     a precondition is missing (not root and something is not installed; QEMU,
#          busybox-static or the kernel package cannot be had): meson "skip"
#   1      the guest could not be booted or went away, or --user setup failed
#   2      usage error
#   124    CMD ran longer than CGRUN_VM_TIMEOUT and was killed
#   126/127  CMD is not executable / not found
#   128+N  this script was stopped by signal N (HUP, INT, TERM)
#
# Knobs: CGRUN_VM_BOOT_TIMEOUT=<s>  until the guest's agent answers (default 180)
#        CGRUN_VM_TIMEOUT=<s>       per command (default 900; 0: none)
#        CGRUN_VM_LOG=console       the guest's console (kernel, systemd) on our stderr
#        CGRUN_VM_VERBOSE=1         boot and command times on stderr
#        CGRUN_VM_CACHE=<dir>       kernel cache directory
#        CGRUN_VM_SMP, CGRUN_VM_MEM vCPUs (2) and MiB of memory (2048)
#        CGRUN_VM_ACCEL=auto|kvm|tcg  auto (default): KVM only where cpuinfo shows vmx/svm
#        CGRUN_VM_KERNEL_PACKAGE=<linux-image-...>  the kernel package to fetch (when none is cached)

set -u
shopt -s nullglob

prog=with-vm.sh
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P) || exit 1
vmdir=$here/vm

skip() { echo "$prog: SKIP: $*" >&2; exit 77; }
fail() { echo "$prog: ERROR: $*" >&2; exit 1; }
usage() { echo "usage: $prog [--user NAME] [--] CMD [ARGS...]" >&2; exit 2; }

# --- arguments -----------------------------------------------------------------
user=''
while (( $# )); do
    case $1 in
        --user) (( $# >= 2 )) || usage; user=$2; shift 2 ;;
        --user=*) user=${1#--user=}; shift ;;
        -h | --help) usage ;;
        --) shift; break ;;
        -*) echo "$prog: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
(( $# )) || usage
if [[ -n $user && ! $user =~ ^[a-z_][a-z0-9_-]{0,30}$ ]]; then
    echo "$prog: --user: not a valid user name: $user" >&2
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

boot_timeout=${CGRUN_VM_BOOT_TIMEOUT:-180}
cmd_timeout=${CGRUN_VM_TIMEOUT:-900}
smp=${CGRUN_VM_SMP:-2}
mem=${CGRUN_VM_MEM:-2048}
for v in BOOT_TIMEOUT:boot_timeout TIMEOUT:cmd_timeout SMP:smp MEM:mem; do
    var=${v#*:}
    [[ ${!var} =~ ^[0-9]+$ ]] || fail "CGRUN_VM_${v%%:*} is not a whole number: ${!var}"
done
(( boot_timeout > 0 && smp > 0 && mem >= 512 )) || fail "boot timeout, vCPUs or memory out of range"
case ${CGRUN_VM_LOG-} in '' | null | console) ;; *) fail "CGRUN_VM_LOG must be console or null" ;; esac
for f in init agent.py host.py units/cgrun-vm.target units/cgrun-vm-agent.service; do
    [[ -f $vmdir/$f ]] || fail "$vmdir/$f is missing"
done

# --- tools: installed when missing -----------------------------------------------
is_installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == 'install ok installed' ]]; }
apt_updated=''
apt_update() {
    [[ -n $apt_updated ]] && return 0
    apt_updated=1
    apt-get update >/dev/null 2>&1 || echo "$prog: warning: apt-get update failed" >&2
}
need=()
type -P qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
is_installed busybox-static || need+=(busybox-static)
[[ -x /usr/bin/python3 ]] || need+=(python3)      # the guest's agent runs /usr/bin/python3
if (( ${#need[@]} )); then
    (( EUID == 0 )) || skip "needs ${need[*]} (not installed, and installing needs root)"
    type -P apt-get >/dev/null || skip "needs ${need[*]}, and there is no apt-get"
    echo "$prog: installing ${need[*]}" >&2
    apt_install() {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" \
            >"$1" 2>&1
    }
    log=$(mktemp) || fail "mktemp"
    if ! apt_install "$log"; then
        apt_update
        apt_install "$log" || { tail -n 5 "$log" >&2; rm -f "$log"; skip "cannot install ${need[*]} with apt-get"; }
    fi
    rm -f "$log"
fi
qemu=$(type -P qemu-system-x86_64) || skip "qemu-system-x86_64 is not installed"
busybox=$(dpkg-query -L busybox-static 2>/dev/null | grep -m1 '/busybox$')
[[ -x $busybox ]] || skip "busybox-static has no busybox binary"
python=/usr/bin/python3
[[ -x $python ]] || skip "/usr/bin/python3 is not installed"
for tool in dpkg-deb flock setpriv; do
    type -P "$tool" >/dev/null || skip "$tool is not installed"
done

# --- the guest kernel, cached: vmlinux (or vmlinuz) and the modules the initramfs needs ---
cache=${CGRUN_VM_CACHE:-$here/../build/vm-cache}
mkdir -p "$cache" || fail "cannot create the cache directory $cache"
cache=$(cd -- "$cache" && pwd -P) || fail "cache directory $cache"
modules_wanted=(virtio_pci virtio_console 9pnet_virtio 9p overlay)

# Finds module $1 under $2 and prints it and its dependencies, dependencies first.
declare -A mod_seen
mod_order=()
mod_resolve() {
    local name=$1 root=$2 f dep
    [[ -n ${mod_seen[$name]-} ]] && return 0
    mod_seen[$name]=1
    f=$(find "$root" \( -name "$name.ko" -o -name "${name//_/-}.ko" \) -print -quit)
    [[ -n $f ]] || { echo "$prog: kernel module $name not found in the package" >&2; return 1; }
    for dep in $(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | tr ',' ' '); do
        mod_resolve "$dep" "$root" || return 1
    done
    mod_order+=("$name:$f")
}

# Unpacks package file $1 into $cache/kernel-<version>/ (done there: no partial dirs).
prepare_kernel() {
    local deb=$1 x kver dir m
    x=$cache/unpack.$$
    rm -rf "$x"
    dpkg-deb -x "$deb" "$x" || { rm -rf "$x"; return 1; }
    kver=$(basename "$x"/lib/modules/*)
    dir=$cache/kernel-$kver
    [[ -n $kver && -f $x/boot/vmlinuz-$kver ]] || { rm -rf "$x"; echo "$prog: no vmlinuz in $deb" >&2; return 1; }
    rm -rf "$dir.part"
    mkdir -p "$dir.part/modules"
    if ! "$python" "$vmdir/host.py" vmlinux "$x/boot/vmlinuz-$kver" "$dir.part/vmlinux"; then
        cp "$x/boot/vmlinuz-$kver" "$dir.part/vmlinuz" # no xz payload: boot the bzImage
    fi
    mod_seen=() mod_order=()
    for m in "${modules_wanted[@]}"; do
        mod_resolve "$m" "$x/lib/modules/$kver" || { rm -rf "$x" "$dir.part"; return 1; }
    done
    for m in "${mod_order[@]}"; do
        if ! cp "${m#*:}" "$dir.part/modules/${m%%:*}.ko"; then
            rm -rf "$x" "$dir.part"
            return 1
        fi
        echo "${m%%:*}" >>"$dir.part/modules/order"
    done
    basename "$deb" >"$dir.part/package"
    rm -rf "$dir" "$x"
    mv "$dir.part" "$dir"
}

exec {lock_fd}>"$cache/.lock"
flock -w 600 "$lock_fd" || fail "cannot lock $cache/.lock"
rm -rf "$cache"/download.* "$cache"/unpack.* "$cache"/kernel-*.part   # of a killed run
kdir=''
for d in "$cache"/kernel-*/; do
    d=${d%/}
    [[ $d == *.part ]] && continue
    [[ -f $d/modules/order && ( -f $d/vmlinux || -f $d/vmlinuz ) ]] && kdir=$d
done
if [[ -z $kdir ]]; then
    type -P apt-get >/dev/null || skip "no cached guest kernel and no apt-get to fetch one"
    pkg=${CGRUN_VM_KERNEL_PACKAGE-}
    if [[ -z $pkg ]]; then
        deps() { apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^ ]*-amd64\)$/\1/p' | head -n1; }
        pkg=$(deps)
        [[ -n $pkg ]] || { apt_update; pkg=$(deps); }
        [[ -n $pkg ]] || skip "apt knows no linux-image-amd64 (Debian's guest kernel package)"
    fi
    echo "$prog: fetching the guest kernel $pkg into $cache" >&2
    dl=$cache/download.$$
    rm -rf "$dl"
    mkdir -p "$dl"
    if ! (cd "$dl" && apt-get download "$pkg" >/dev/null 2>&1); then
        apt_update
        (cd "$dl" && apt-get download "$pkg" >/dev/null 2>&1) ||
            { rm -rf "$dl"; skip "cannot download the kernel package $pkg"; }
    fi
    debs=("$dl"/*.deb)
    (( ${#debs[@]} == 1 )) || { rm -rf "$dl"; skip "apt-get download $pkg gave no package"; }
    prepare_kernel "${debs[0]}" || { rm -rf "$dl"; fail "cannot unpack the kernel package $pkg"; }
    rm -rf "$dl"
    for d in "$cache"/kernel-*/; do
        d=${d%/}
        [[ -f $d/modules/order ]] && kdir=$d
    done
    [[ -n $kdir ]] || fail "no kernel in $cache after unpacking $pkg"
fi
flock -u "$lock_fd"
exec {lock_fd}>&-
kernel=$kdir/vmlinux
[[ -f $kernel ]] || kernel=$kdir/vmlinuz

# --- the run directory, stale ones, teardown ------------------------------------------
# nap SECONDS: sleep without a fork (read on a pipe nobody writes to).
exec {nap_fd}<> <(:)
# shellcheck disable=SC2317 # called from the EXIT trap
nap() { read -r -t "$1" -u "$nap_fd"; }

tmp=${TMPDIR:-/tmp}
for d in "$tmp"/cgrun-vm.*; do
    owner=${d##*.}
    [[ -d $d && $owner =~ ^[0-9]+$ ]] || continue
    if (( owner != $$ )) && grep -qa 'with-vm\.sh' "/proc/$owner/cmdline" 2>/dev/null; then
        continue                                      # alive: another run's
    fi
    rm -rf "$d"
done
run=$tmp/cgrun-vm.$$
rm -rf "$run"
mkdir -m 0700 "$run" || fail "cannot create $run"

qpid='' hpid=''
# shellcheck disable=SC2317 # called from the EXIT trap
teardown() {
    local i
    trap '' HUP INT TERM
    if [[ -n $hpid ]]; then
        kill -KILL "$hpid" 2>/dev/null
        { wait "$hpid"; } 2>/dev/null
    fi
    if [[ -n $qpid ]]; then
        kill -TERM "$qpid" 2>/dev/null
        for ((i = 0; i < 250; i++)); do
            kill -0 "$qpid" 2>/dev/null || break
            nap 0.02
        done
        kill -KILL "$qpid" 2>/dev/null
        { wait "$qpid"; } 2>/dev/null
    fi
    rm -rf "$run"
}
trap teardown EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the initramfs ----------------------------------------------------------------------
ir=$run/initramfs
mkdir -p "$ir/bin" "$ir/modules" "$ir/cgrun-vm/units"
if ! { cp "$busybox" "$ir/bin/busybox" &&
    cp "$vmdir/init" "$ir/init" && chmod 0755 "$ir/init" &&
    cp "$kdir"/modules/* "$ir/modules/" &&
    cp "$vmdir"/units/* "$ir/cgrun-vm/units/" &&
    cp "$vmdir/agent.py" "$ir/cgrun-vm/agent.py"; }; then
    fail "cannot assemble the initramfs"
fi
# /tmp/<entry>s to keep visible in the guest's fresh /tmp
: >"$ir/cgrun-vm/keep"
for p in "$PWD" "$cmd"; do
    if [[ $p == /tmp/?* ]]; then
        p=${p#/tmp/}
        echo "${p%%/*}" >>"$ir/cgrun-vm/keep"
    fi
done
(cd "$ir" && find . -mindepth 1 | "$busybox" cpio -o -H newc >"$run/initramfs.cpio" 2>/dev/null) ||
    fail "cannot pack the initramfs"
rm -rf "$ir"

# --- QEMU -------------------------------------------------------------------------------
# TCG unless the CPU has real hardware virtualization: /dev/kvm may be a PVM backend that
# does not run ordinary kernels (it is on the CI machines, whose cpuinfo has no vmx/svm).
tcg=tcg,thread=multi
accel=(-accel "$tcg" -cpu max)
case ${CGRUN_VM_ACCEL:-auto} in
    tcg) ;;
    auto | kvm)
        if grep -qwE 'vmx|svm' /proc/cpuinfo && [[ -r /dev/kvm && -w /dev/kvm ]]; then
            accel=(-accel kvm -accel "$tcg" -cpu max)   # QEMU takes the first that works
        elif [[ ${CGRUN_VM_ACCEL-} == kvm ]]; then
            skip "CGRUN_VM_ACCEL=kvm, but the CPU has no vmx/svm or /dev/kvm is not usable"
        fi ;;
    *) fail "CGRUN_VM_ACCEL must be auto, kvm or tcg" ;;
esac
append="console=ttyS0 panic=-1 rdinit=/init tsc=reliable cgroup_no_v1=all"
append+=" systemd.unified_cgroup_hierarchy=1 systemd.unit=cgrun-vm.target systemd.firstboot=off"
append+=" systemd.show_status=error"
if [[ ${CGRUN_VM_LOG-} == console ]]; then
    exec {console_fd}>&2
    console=(-chardev "file,id=console,path=/dev/fd/$console_fd,append=on" -serial chardev:console)
else
    append+=" quiet loglevel=3"
    console=(-chardev "file,id=console,path=$run/console.log" -serial chardev:console)
fi
pdeath=(setpriv --pdeathsig KILL)
"${pdeath[@]}" "$qemu" -name cgrun-vm -machine pc "${accel[@]}" -smp "$smp" -m "$mem" \
    -nodefaults -no-user-config -display none -nic none -no-reboot -monitor none \
    "${console[@]}" \
    -kernel "$kernel" -initrd "$run/initramfs.cpio" -append "$append" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
    -device virtio-serial-pci \
    -chardev "socket,id=agent,path=$run/agent.sock,server=on,wait=off" \
    -device virtserialport,chardev=agent,name=cgrun.agent \
    </dev/null >"$run/qemu.log" 2>&1 &
qpid=$!

# In the background, so that the HUP/INT/TERM traps run at once; stdout and stderr are ours.
"$python" "$vmdir/host.py" run --socket "$run/agent.sock" --qemu-pid "$qpid" \
    --boot-timeout "$boot_timeout" --timeout "$cmd_timeout" --user "$user" --cwd "$PWD" \
    -- "$cmd" "$@" </dev/null &
hpid=$!
wait "$hpid"
rc=$?
hpid=''
if [[ -e $run/guest-failed ]]; then                   # the guest failed: show why
    for f in qemu.log console.log; do
        [[ -s $run/$f ]] || continue
        echo "$prog: last lines of the guest's $f:" >&2
        tail -n 25 "$run/$f" | sed 's/^/  | /' >&2
    done
    [[ ${CGRUN_VM_LOG-} == console ]] || echo "$prog: rerun with CGRUN_VM_LOG=console to see the guest's console" >&2
fi
exit "$rc"
