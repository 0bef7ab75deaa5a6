#!/usr/bin/python3
"""Enforcement tests of the cgrun tool in a QEMU guest with a normally booted systemd.

usage: with-vm.sh [--user NAME] -- python3 enforcement_test.py CGRUN_BINARY root|user

Meant to run in the guest of tests/with-vm.sh: as root in a transient scope with
Delegate=yes ("root"), or as a non-root user in a logind session whose systemd --user
manager runs ("user"). There the cgroup2 hierarchy has the memory, pids and cpu
controllers that this machine's own hierarchy lacks, so limits are really enforced:

  root  MemoryMax=50M OOM-kills a 200 MB allocation (scope; cgroup under a delegated parent,
        and what -m cgroup does when its parent holds processes); TasksMax=5 makes forks
        fail and nothing is left; CPUQuota=20% holds a busy loop near 20 %; the report of an
        ordinary run has memory_peak_bytes; -m auto picks a scope of the system manager.
  user  a setsid escapee of a timed-out --user scope dies; -m auto picks a scope of the
        user's manager; MemoryMax=50M is enforced in a user scope; memory_peak_bytes.

Each check prints "ok - NAME" or "FAIL - NAME: why" (with cgrun's report), then a line
"N passed, N failed". Exit status: 0 when all passed, 1 otherwise, 77 when the
preconditions are missing (not the guest: no controllers; wrong user).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # as-user.sh: a copy beside it
import report_schema  # noqa: E402  (tests/report_schema.py; imports jsonschema on first use)

SKIP = 77
MiB = 1024 * 1024
LIMIT = 50 * MiB
PEAK_SLACK = 2 * MiB                # memory.peak may pass memory.max by a few pages
ALLOC = ["-c", "b = bytearray(200 * 1024 * 1024)"]  # 200 MB, every page touched (zeroed)
PY = sys.executable or "/usr/bin/python3"
RUN_TIMEOUT = 120                   # any single cgrun run (TCG is 10-60x slower)
# OOM runs per method: systemd once raced the report of 1 OOM kill in 3 to 8, so a handful
# of runs would let that pass unnoticed. tests/vm/oom-stress.sh sets more (and ONLY).
OOM_RUNS = int(os.environ.get("CGRUN_VM_OOM_RUNS", "10"))
ONLY = os.environ.get("CGRUN_VM_ONLY", "")  # run only the checks whose name matches this regex

CGRUN = ""
TMP = ""
results = []                        # (name, ok, detail)


# --- helpers ------------------------------------------------------------------------------

def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                return fields[4]
    return None


def own_cgroup():
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return None


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


class Run:
    """One cgrun run with --json: exit status, stdout, stderr and the parsed report."""

    counter = 0

    def __init__(self, opts, command, env=None, prefix=()):
        Run.counter += 1
        self.json_path = os.path.join(TMP, f"report-{Run.counter}.json")
        self.argv = list(prefix) + [CGRUN, "--json", self.json_path] + opts + ["--"] + command
        start = time.monotonic()
        try:
            p = subprocess.run(self.argv, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=RUN_TIMEOUT, env=env)
            self.status, self.out, self.err = p.returncode, p.stdout.decode(errors="replace"), \
                p.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired as e:
            self.status = None
            self.out = (e.stdout or b"").decode(errors="replace")
            self.err = (e.stderr or b"").decode(errors="replace") + f"\n[no exit within {RUN_TIMEOUT} s]"
        self.seconds = time.monotonic() - start
        try:
            with open(self.json_path) as f:
                self.report = json.load(f)
        except (OSError, ValueError) as e:
            self.report = None
            self.err += f"\n[no JSON report: {e}]"
        if self.report is not None:  # every report must match doc/report.schema.json
            report_schema.validate(self.report)  # AssertionError: the check fails, naming why

    def __getitem__(self, key):
        return (self.report or {}).get(key)

    def describe(self):
        rep = json.dumps(self.report, indent=None) if self.report is not None else "none"
        return (f"    $ {' '.join(self.argv)}\n    exit status {self.status} after {self.seconds:.1f} s\n"
                f"    stdout: {self.out.strip()!r}\n    stderr: {self.err.strip()!r}\n    report: {rep}")


class CheckFailed(Exception):
    pass


def expect(cond, what, run=None):
    if not cond:
        raise CheckFailed(what + ("\n" + run.describe() if run is not None else ""))


def check(name):
    """Decorator: runs the check now, records ok/FAIL and what it said."""
    def deco(fn):
        if ONLY and not re.search(ONLY, name):
            return fn
        start = time.monotonic()
        try:
            detail = fn() or ""
            ok = True
        except CheckFailed as e:
            ok, detail = False, str(e)
        except Exception as e:  # a bug of the test itself counts as a failure too
            ok, detail = False, f"{type(e).__name__}: {e}"
        took = time.monotonic() - start
        results.append((name, ok, detail))
        if ok:
            print(f"ok - {name} ({took:.1f} s){': ' + detail if detail else ''}", flush=True)
        else:
            print(f"FAIL - {name} ({took:.1f} s): {detail}", flush=True)
        return fn
    return deco


def marker_pids(marker):
    """PIDs whose command line is exactly `sleep MARKER` (our test children)."""
    want = f"sleep\0{marker}\0".encode()
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if f.read() == want:
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def expect_oom(r, what):
    expect(r.report is not None, f"{what}: no report", r)
    expect(r.status == 137, f"{what}: exit status {r.status}, want 137 (128+SIGKILL)", r)
    expect(r["signal"] == "KILL", f"{what}: signal {r['signal']!r}, want 'KILL'", r)
    expect(r["oom_killed"] is True, f"{what}: oom_killed {r['oom_killed']!r}, want true", r)
    peak = r["memory_peak_bytes"]
    expect(isinstance(peak, int), f"{what}: memory_peak_bytes {peak!r}, want a number", r)
    expect(LIMIT // 2 <= peak <= LIMIT + PEAK_SLACK,
           f"{what}: memory_peak_bytes {peak}, want about {LIMIT} (<= {LIMIT + PEAK_SLACK})", r)
    expect(r["remaining_processes"] == 0, f"{what}: remaining_processes {r['remaining_processes']}", r)
    return peak


def repeat(n, one):
    """Runs the check `one(i)` n times; all must pass. Says in how many runs it failed."""
    values, failures = [], []
    for i in range(n):
        try:
            values.append(one(i))
        except CheckFailed as e:
            failures.append(f"run {i + 1}: {e}")
    if failures:
        raise CheckFailed(f"failed in {len(failures)} of {n} runs; the first: {failures[0]}")
    return values


def oom_runs(opts, n):
    peaks = repeat(n, lambda i: expect_oom(Run(opts + ["-p", "MemoryMax=50M"], [PY] + ALLOC), "OOM"))
    if len(set(peaks)) == 1:
        return f"exit 137, oom_killed, memory_peak_bytes {peaks[0]} in each of {n} runs"
    return f"exit 137, oom_killed in each of {n} runs, memory_peak_bytes {min(peaks)} to {max(peaks)}"


def memory_peak_runs(opts, n):
    """n ordinary runs: each report must have a positive memory_peak_bytes."""
    def one(i):
        r = Run(opts, ["sh", "-c", "sleep 0.3"])
        expect(r.status == 0 and r.report is not None, f"exit status {r.status}", r)
        peak = r["memory_peak_bytes"]
        expect(isinstance(peak, int) and peak > 0, f"memory_peak_bytes {peak!r}, want a number", r)
        return peak
    peaks = repeat(n, one)
    return f"memory_peak_bytes {peaks}"


# --- root: limits in scopes and in delegated cgroups -----------------------------------------

def root_checks():
    mount = cgroup2_mount()
    mine = own_cgroup()
    if mount is None or mine is None:
        print("SKIP: no cgroup2 hierarchy", file=sys.stderr)
        return SKIP
    unit_dir = os.path.join(mount, mine.lstrip("/"))
    controllers = read(os.path.join(mount, "cgroup.controllers")).split()
    if not {"memory", "pids", "cpu"} <= set(controllers):
        print(f"SKIP: the cgroup2 root offers {controllers}, not memory, pids and cpu "
              "(run this in the guest of tests/with-vm.sh)", file=sys.stderr)
        return SKIP
    print(f"# own cgroup {mine}; its controllers: {read(os.path.join(unit_dir, 'cgroup.controllers')).strip()}")

    @check(f"scope: MemoryMax=50M OOM-kills a 200 MB allocation ({OOM_RUNS} runs)")
    def _():
        return oom_runs(["-m", "scope"], OOM_RUNS)

    @check("cgroup: MemoryMax=50M under cgrun's own cgroup, which holds processes, fails clearly")
    def _():
        # The library enables the controller in the parent's cgroup.subtree_control; the
        # kernel refuses that (EBUSY) while the parent itself holds processes (cgrun, us).
        r = Run(["-m", "cgroup", "-p", "MemoryMax=50M"], [PY] + ALLOC)
        expect(r.status == 125, f"exit status {r.status}, want 125 (cgrun failed)", r)
        err = r["error"] or ""
        expect("memory" in err and "busy" in err.lower(),
               f"error {err!r}, want one about enabling the memory controller (EBUSY)", r)
        expect(r["pid"] is None, "a command was started", r)
        return f"exit 125, error {err!r}"

    # Move ourselves into a leaf: our delegated unit cgroup then holds no process, and the
    # cgroup method can enable controllers in it (--cgroup-parent).
    leaf = os.path.join(unit_dir, "test-runner")
    os.makedirs(leaf, exist_ok=True)
    with open(os.path.join(leaf, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    parent = ["-m", "cgroup", "--cgroup-parent", mine]

    @check(f"cgroup: MemoryMax=50M under a delegated parent that holds no process ({OOM_RUNS} runs)")
    def _():
        said = oom_runs(parent, OOM_RUNS)
        sub = read(os.path.join(unit_dir, "cgroup.subtree_control")).split()
        expect("memory" in sub, f"memory not enabled in {mine}/cgroup.subtree_control: {sub}")
        return said

    forker = ("import subprocess, sys\n"
              "ok = failed = 0\n"
              "for i in range(20):\n"
              "    try:\n"
              "        subprocess.Popen(['sleep', sys.argv[1]], stdin=subprocess.DEVNULL)\n"
              "        ok += 1\n"
              "    except BlockingIOError:\n"
              "        failed += 1\n"
              "print(ok, failed)\n")

    def tasks_check(method_opts, marker):
        r = Run(method_opts + ["-p", "TasksMax=5", "-t", "60"], [PY, "-c", forker, marker])
        expect(r.status == 0, f"exit status {r.status}, want 0", r)
        m = re.fullmatch(r"(\d+) (\d+)\s*", r.out)
        expect(m is not None, "no 'OK FAILED' counts on stdout", r)
        ok, failed = int(m[1]), int(m[2])
        # 5 tasks: the forker itself and at most 4 sleeps
        expect(1 <= ok <= 4 and failed == 20 - ok, f"{ok} forks worked and {failed} failed, "
               "want 1 to 4 and the rest", r)
        expect(r["remaining_processes"] == 0, f"remaining_processes {r['remaining_processes']}", r)
        expect(r["kill"] is not None, "kill is null: the sleeps left behind were not stopped", r)
        left = marker_pids(marker)
        expect(not left, f"sleeps still alive after the run: {left}", r)
        return f"{ok} forks worked, {failed} failed (EAGAIN), none left, {r.seconds:.1f} s"

    @check("scope: TasksMax=5 makes forks of 20 sleeps fail, the run ends, nothing left")
    def _():
        return tasks_check(["-m", "scope"], "271")

    @check("cgroup: TasksMax=5 makes forks of 20 sleeps fail, the run ends, nothing left")
    def _():
        return tasks_check(parent, "272")

    busy = ["sh", "-c", "while :; do :; done"]

    def cpu_share(opts):
        r = Run(opts + ["-t", "3"], busy)
        expect(r.status == 124 and r["timed_out"] is True, f"exit status {r.status}, want 124", r)
        wall = r["wall_time_ms"]
        cpu = r["cpu_user_ms"] + r["cpu_system_ms"]
        expect(wall >= 2900, f"wall_time_ms {wall}, want >= 3000", r)
        return cpu / wall, r

    @check("scope: CPUQuota=20% holds a 3 s busy loop at about 20 % (without: far more)")
    def _():
        share, r = cpu_share(["-m", "scope", "-p", "CPUQuota=20%"])
        expect(0.05 <= share <= 0.27, f"CPU time is {share:.0%} of the wall time, want about 20 % "
               "(5 % to 27 %)", r)
        free, r2 = cpu_share(["-m", "scope"])
        expect(free >= 0.5, f"without CPUQuota the loop got only {free:.0%} of the wall time", r2)
        return f"{share:.1%} with CPUQuota=20%, {free:.1%} without"

    @check("cgroup: CPUQuota=20% holds a 3 s busy loop at about 20 %")
    def _():
        share, r = cpu_share(parent + ["-p", "CPUQuota=20%"])
        expect(0.05 <= share <= 0.27, f"CPU time is {share:.0%} of the wall time, want about 20 % "
               "(5 % to 27 %)", r)
        return f"{share:.1%}"

    def written_files(method_opts):
        # systemd's syntax: fractions, percentages (TasksMax: of min(pid_max - 1, threads-max)),
        # weights. (CPUQuota=0.5% -> "1000 200000" is unit-tested: a command held at 0.5 % CPU
        # under TCG took over 120 s to run this script.)
        tasks = min(int(read("/proc/sys/kernel/pid_max")) - 1, int(read("/proc/sys/kernel/threads-max")))
        want = {"memory.max": str(3 * 512 * MiB), "memory.high": str(1024 * MiB),
                "pids.max": str(tasks * 100 // 10000), "cpu.max": "50000 100000", "cpu.weight": "50"}
        script = (f"cd {cgroup2_mount()}$(sed -n 's/^0:://p' /proc/self/cgroup) && "
                  f"for f in {' '.join(want)}; do echo \"$f $(cat $f)\"; done")
        r = Run(method_opts + ["-p", "MemoryMax=1.5G", "-p", "MemoryHigh=1G", "-p", "TasksMax=1%",
                               "-p", "CPUQuota=50%", "-p", "CPUWeight=50"], ["sh", "-c", script])
        expect(r.status == 0, f"exit status {r.status}, want 0", r)
        got = dict(line.split(" ", 1) for line in r.out.strip().splitlines())
        expect(got == want, f"files {got}, want {want}", r)
        return ", ".join(f"{k}={v}" for k, v in got.items())

    @check("scope: MemoryMax=1.5G, MemoryHigh=1G, TasksMax=1%, CPUQuota=50%, CPUWeight=50 as systemd writes them")
    def _():
        return written_files(["-m", "scope"])

    @check("cgroup: MemoryMax=1.5G, MemoryHigh=1G, TasksMax=1%, CPUQuota=50%, CPUWeight=50, same files")
    def _():
        return written_files(parent)

    @check("CPUWeight=idle: cpu.idle 1, for a scope (systemd's own doing) and for the cgroup method")
    def _():
        script = f"cat {cgroup2_mount()}$(sed -n 's/^0:://p' /proc/self/cgroup)/cpu.idle"
        got = []
        for opts in (["-m", "scope"], parent):
            r = Run(opts + ["-p", "CPUWeight=idle"], ["sh", "-c", script])
            expect(r.status == 0 and r.out.strip() == "1", f"{r['method']}: cpu.idle {r.out.strip()!r}, "
                   f"exit {r.status}, want 1 and 0", r)
            got.append(f"{r['method']}: cpu.idle={r.out.strip()}")
        return ", ".join(got)

    @check("auto as root, in a unit without delegation, picks a scope of the system manager")
    def _():
        r = Run(["-m", "auto"], ["true"], prefix=["systemd-run", "--scope", "--quiet", "--collect", "--"])
        expect(r.status == 0 and r["method"] == "scope", f"method {r['method']!r}, want 'scope'", r)
        expect(r["fallbacks"] == [], f"fallbacks {r['fallbacks']}", r)
        expect(bool(re.fullmatch(r"cgrun-.+\.scope", r["unit"] or "")), f"unit {r['unit']!r}", r)
        expect((r["cgroup"] or "").startswith("/system.slice/"), f"cgroup {r['cgroup']!r}", r)
        return f"unit {r['unit']}, cgroup {r['cgroup']}"

    @check("auto as root, in a leaf of a Delegate=yes unit, takes a cgroup below that leaf: no scope")
    def _():
        r = Run(["-m", "auto"], ["true"])
        unit = own_cgroup().split("/")[-2]  # the agent's Delegate=yes scope, above our leaf
        expect(r.status == 0 and r["method"] == "cgroup" and r["unit"] == unit,
               f"method {r['method']!r}, unit {r['unit']!r}; want cgroup and {unit}", r)
        expect((r["cgroup"] or "").startswith(own_cgroup() + "/cgrun-"), f"cgroup {r['cgroup']!r}", r)
        expect("is delegated" in (r["method_reason"] or ""), f"method_reason {r['method_reason']!r}", r)
        return f"cgroup {r['cgroup']}; {r['method_reason']}"

    @check("a Delegate=yes service: auto puts every child in its subtree (no unit per child), "
           "limits after the setup step, and stopping the service kills every child (issue 11)")
    def _():
        return delegated_service_checks(forker)

    @check("container: limits need the setup step, which moves the processes to a leaf (issue 11)")
    def _():
        return container_checks(unit_dir, forker)

    @check("cgroup: an ordinary run reports memory_peak_bytes (5 runs)")
    def _():
        return memory_peak_runs(parent, 5)

    # (-m scope: in this Delegate=yes unit auto takes a cgroup leaf, where memory figures
    # need the memory controller enabled for children, i.e. the setup step)
    @check("scope: an ordinary run reports memory_peak_bytes (5 runs)")
    def _():
        return memory_peak_runs(["-m", "scope"], 5)

    return None


def work_readers(work):
    """Readers of what a script left in `work`: a stripped text file ("" when missing) and a
    JSON report ({} when missing or unparsable)."""
    def val(name):
        try:
            return read(os.path.join(work, name)).strip()
        except OSError:
            return ""
    def rep(name):
        try:
            with open(os.path.join(work, name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}
    return val, rep


def delegated_service_checks(forker):
    """A transient service with Delegate=yes runs cgrun several times (cgrun is the library's
    program; no -m, no parent): the setup step, then limited and escaping trees."""
    work = tempfile.mkdtemp(prefix="svc-", dir=TMP)
    unit = f"cgrun-vm-svc-{os.getpid()}.service"
    alloc = f"{PY} -c 'b = bytearray(200 * 1024 * 1024)'"
    with open(os.path.join(work, "forker.py"), "w") as f:
        f.write(forker)
    script = f"""
cd {work}
{CGRUN} --setup-cgroup --json s.json; echo $? > rcs
{CGRUN} -p MemoryMax=50M --json r1.json -- {alloc}; echo $? > rc1
{CGRUN} -p TasksMax=5 --json r2.json -- {PY} -c "$(cat forker.py)" 481 > r2.out; echo $? > rc2
systemctl list-units --all --plain --no-legend 'cgrun-*.scope' > units
{CGRUN} --json r3.json -- sh -c 'setsid sleep 483 & echo $! > esc.pid; exec sleep 484'
"""
    subprocess.run(["systemd-run", "--quiet", f"--unit={unit}", "-p", "Delegate=yes", "--", "sh", "-c", script],
                   check=True, capture_output=True, timeout=60)
    val, rep = work_readers(work)
    try:
        deadline = time.monotonic() + 120
        while not val("esc.pid") and time.monotonic() < deadline:
            time.sleep(0.1)
        esc = int(val("esc.pid") or 0)
        expect(esc > 0, f"the service did not get to its last run; rcs {val('rcs')}, rc1 {val('rc1')}, "
               f"rc2 {val('rc2')}")
        main = int(subprocess.run(["systemctl", "show", "-P", "MainPID", unit], capture_output=True,
                                  text=True).stdout.strip() or 0)
        svc_cg = f"/system.slice/{unit}"
        s, r1, r2 = rep("s.json"), rep("r1.json"), rep("r2.json")
        expect(val("rcs") == "0" and s.get("leaf") == svc_cg + "/init", f"setup: exit {val('rcs')}, {s}")
        for r in (r1, r2):
            report_schema.validate(r)
            expect(r.get("method") == "cgroup" and r.get("unit") == unit and
                   (r.get("cgroup") or "").startswith(svc_cg + "/cgrun-") and "delegated" in (r.get("method_reason") or ""),
                   f"not placed in the service's subtree: {r}")
        expect(val("rc1") == "137" and r1.get("oom_killed") is True, f"MemoryMax=50M: exit {val('rc1')}, {r1}")
        m = re.fullmatch(r"(\d+) (\d+)\s*", val("r2.out") + "\n")
        expect(val("rc2") == "0" and m is not None and 1 <= int(m[1]) <= 4,
               f"TasksMax=5: exit {val('rc2')}, forks {val('r2.out')!r}")
        # (the vm agent runs this test itself in a scope cgrun-vm-cmd-N.scope)
        per_child = [l for l in val("units").splitlines() if not l.startswith("cgrun-vm-cmd-")]
        expect(per_child == [], f"transient cgrun scopes while the service ran: {per_child}")
        running = read(f"/proc/{esc}/cmdline") if os.path.exists(f"/proc/{esc}") else ""
        expect(running == "sleep\0" "483\0", f"the escapee {esc} is not running before the stop: {running!r}")
        subprocess.run(["systemctl", "stop", unit], check=True, timeout=60)
        gone = not os.path.exists(f"/proc/{esc}") or read(f"/proc/{esc}/cmdline") != "sleep\0" "483\0"
        expect(gone, f"the setsid escapee {esc} outlived the stopped service")
        left = subprocess.run(["pgrep", "-f", "^sleep 48[34]$"], capture_output=True, text=True).stdout.split()
        expect(left == [], f"processes of the service left after the stop: {left}")
        return (f"service pid {main}: setup moved {len(s.get('moved', []))} to init; OOM 137 and TasksMax "
                f"{m[1]} forks in {svc_cg}/cgrun-*, no cgrun scope; after the stop the escapee is gone")
    finally:
        subprocess.run(["systemctl", "stop", unit], capture_output=True, timeout=60)
        subprocess.run(["systemctl", "reset-failed", unit], capture_output=True, timeout=60)


def container_checks(unit_dir, forker):
    """A container-like tree: its own cgroup namespace rooted at a cgroup that holds its
    processes and offers memory and pids, cgroup2 mounted anew inside, no systemd used."""
    ctr = os.path.join(unit_dir, "ctr")
    os.makedirs(ctr, exist_ok=True)
    with open(os.path.join(unit_dir, "cgroup.subtree_control"), "w") as f:
        f.write("+memory +pids")
    offered = read(os.path.join(ctr, "cgroup.controllers")).split()
    expect({"memory", "pids"} <= set(offered), f"ctr offers {offered}")
    work = tempfile.mkdtemp(prefix="ctr-", dir=TMP)
    alloc = f"{PY} -c 'b = bytearray(200 * 1024 * 1024)'"
    script = f"""
set -u
cd {work}
mount --make-rprivate /
umount -l /sys/fs/cgroup
mount -t cgroup2 none /sys/fs/cgroup
sleep 1000 &
keep=$!
echo $keep > keep.pid
{CGRUN} -m cgroup -p MemoryMax=50M --json r1.json -- {alloc}; echo $? > rc1
{CGRUN} --setup-cgroup --json s1.json; echo $? > rcs1
{CGRUN} --setup-cgroup --json s2.json; echo $? > rcs2
{CGRUN} -m cgroup -p MemoryMax=50M --json r2.json -- {alloc}; echo $? > rc2
{CGRUN} -m cgroup -p TasksMax=5 --json r3.json -- {PY} -c "$(cat forker.py)" 471 > r3.out; echo $? > rc3
{CGRUN} -m cgroup -t 2 --json r4.json -- sh -c 'setsid sleep 473 & echo $! > esc.pid; sleep 474'; echo $? > rc4
cat /proc/$keep/cgroup > keep.cgroup
kill $keep
"""
    with open(os.path.join(work, "forker.py"), "w") as f:
        f.write(forker)
    def enter():
        with open(os.path.join(ctr, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    p = subprocess.run(["unshare", "--cgroup", "--mount", "--fork", "sh", "-c", script], preexec_fn=enter,
                       capture_output=True, timeout=300)
    val, rep = work_readers(work)
    said = f"script exit {p.returncode}, stderr {p.stderr.decode(errors='replace')[-600:]!r}"
    r1 = rep("r1.json")
    expect(val("rc1") == "125", f"without the setup step: exit {val('rc1')}, want 125; {said}")
    expect("--setup-cgroup" in (r1.get("error") or ""), f"the error does not name the setup step: {r1.get('error')!r}")
    s1, s2 = rep("s1.json"), rep("s2.json")
    expect(val("rcs1") == "0" and s1.get("leaf") == "/init" and len(s1.get("moved", [])) >= 2,
           f"setup: exit {val('rcs1')}, {s1}; {said}")
    expect({"memory", "pids"} <= set(s1.get("controllers", [])), f"setup enabled {s1.get('controllers')}")
    expect(val("rcs2") == "0" and s2.get("moved") == [] and s2.get("enabled") == [] and s2.get("changed") is False,
           f"the second setup changed something: {s2}")
    r2 = rep("r2.json")
    expect(val("rc2") == "137" and r2.get("oom_killed") is True and r2.get("cgroup", "").startswith("/cgrun-"),
           f"after setup, MemoryMax=50M: exit {val('rc2')}, {r2}")
    m = re.fullmatch(r"(\d+) (\d+)\s*", read(os.path.join(work, "r3.out")))
    expect(val("rc3") == "0" and m is not None and 1 <= int(m[1]) <= 4,
           f"TasksMax=5: exit {val('rc3')}, forks {read(os.path.join(work, 'r3.out'))!r}")
    esc = int(val("esc.pid") or 0)
    expect(val("rc4") == "124" and esc > 0 and read(f"/proc/{esc}/cmdline") != "sleep\0" "473\0",
           f"the escapee {esc} survived, or no timeout: exit {val('rc4')}")
    expect(val("keep.cgroup") == "0::/init", f"the container's process is in {val('keep.cgroup')!r}, want /init")
    return (f"125 naming the step before it; setup moved {len(s1['moved'])} processes to /init and enabled "
            f"{' '.join(s1['controllers'])}; again: nothing; then OOM 137, TasksMax {m[1]} forks, escapee dead")


# --- user: a scope of the user's own manager ------------------------------------------------

def user_checks():
    uid = os.getuid()
    if uid == 0:
        print("SKIP: the user checks must run as a non-root user (with-vm.sh --user NAME)",
              file=sys.stderr)
        return SKIP
    if not os.path.exists(f"/run/user/{uid}/bus"):
        print(f"SKIP: no user bus at /run/user/{uid}/bus (no systemd --user manager)", file=sys.stderr)
        return SKIP
    prefix = f"/user.slice/user-{uid}.slice/user@{uid}.service/"
    print(f"# uid {uid}, own cgroup {own_cgroup()}")

    # -t 4, not less: under TCG on a busy host the shell took over 1 s to get to `echo $!`.
    @check("user scope: a setsid escapee of a timed-out command dies (-t 4)")
    def _():
        pidfile = os.path.join(TMP, "escapee.pid")
        r = Run(["--user", "-m", "scope", "-t", "4"],
                ["sh", "-c", f"setsid sleep 313 & echo $! >{pidfile}; sleep 314"])
        expect(r.status == 124, f"exit status {r.status}, want 124", r)
        expect(r["timed_out"] is True, "timed_out is not true", r)
        expect(r["method"] == "scope", f"method {r['method']!r}, want 'scope'", r)
        expect(bool(re.fullmatch(r"cgrun-.+\.scope", r["unit"] or "")), f"unit {r['unit']!r}", r)
        expect((r["cgroup"] or "").startswith(prefix), f"cgroup {r['cgroup']!r}, want under {prefix}", r)
        expect(r["remaining_processes"] == 0, f"remaining_processes {r['remaining_processes']}", r)
        pid = int(read(pidfile).strip() or 0)
        expect(pid > 0, "the command did not write the escapee's pid", r)
        expect(read(f"/proc/{pid}/cmdline") != "sleep\0" "313\0", f"the escapee {pid} is alive", r)
        left = marker_pids("313") + marker_pids("314")
        expect(not left, f"still alive: {left}", r)
        return f"exit 124, escapee {pid} dead, unit {r['unit']}"

    @check("auto as non-root picks a scope on the user bus")
    def _():
        r = Run(["-m", "auto"], ["true"])
        expect(r.status == 0, f"exit status {r.status}", r)
        expect(r["method"] == "scope", f"method {r['method']!r}, want 'scope'", r)
        expect(bool(re.fullmatch(r"cgrun-.+\.scope", r["unit"] or "")), f"unit {r['unit']!r}", r)
        expect((r["cgroup"] or "").startswith(prefix),
               f"cgroup {r['cgroup']!r}, want a scope of the user manager (under {prefix})", r)
        return f"unit {r['unit']}, fallbacks {[f['method'] for f in r['fallbacks']]}"

    @check(f"user scope: MemoryMax=50M OOM-kills a 200 MB allocation ({OOM_RUNS} runs)")
    def _():
        return oom_runs(["--user", "-m", "scope"], OOM_RUNS)

    @check("user scope: an ordinary run reports memory_peak_bytes (5 runs)")
    def _():
        return memory_peak_runs(["--user", "-m", "scope"], 5)

    return None


def main():
    global CGRUN, TMP
    if len(sys.argv) != 3 or sys.argv[2] not in ("root", "user"):
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    CGRUN = os.path.abspath(sys.argv[1])
    if not os.access(CGRUN, os.X_OK):
        print(f"SKIP: {CGRUN} is not executable", file=sys.stderr)
        return SKIP
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cgrun-vm-test-") as TMP:
        rc = root_checks() if sys.argv[2] == "root" else user_checks()
    if rc is not None:
        return rc
    failed = sum(1 for _, ok, _ in results if not ok)
    print(f"# {sys.argv[2]} checks took {time.monotonic() - start:.1f} s")
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
