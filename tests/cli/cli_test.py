#!/usr/bin/env python3
"""End-to-end tests of the cgrun tool: options, exit statuses, JSON reports, containment.

usage: cli_test.py CGRUN_BINARY HERE [unittest arguments...]

HERE says where the tests run, and so what `-m auto` must pick: "cgroup" on a host whose
PID 1 is not systemd (auto: cgroup); "scope" under a real systemd, outside any cgroup it
delegated (auto: scope); "delegated" inside a unit with Delegate=yes (auto: cgroup, a leaf
of the unit's cgroup, systemd reachable). Exits 77 (skip) when the binary is missing or
the test does not run as root.

Every process a test starts carries CGRUN_CLI_TEST=<its temp dir> in its environment;
tearDown kills whatever still carries it, so a failing test leaves nothing behind.
"""

import datetime
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import report_schema  # noqa: E402  (tests/report_schema.py: every report is checked against doc/)


def load_report(f, kind="run"):
    """Parses a report from a file object and validates it against its JSON Schema."""
    return report_schema.validate(json.load(f), kind)


def parse_report(text, kind="run"):
    """Parses a report from text (bytes or str) and validates it against its JSON Schema."""
    return report_schema.validate(json.loads(text), kind)

SKIP = 77
CGRUN = ""
AUTO = ""          # the method auto must pick here
SYSTEMD = False    # a systemd manager answers
DELEGATED = False  # our own cgroup is a Delegate=yes unit's

SH = "/bin/sh"


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                return fields[4]
    return None


def root_controllers():
    mount = cgroup2_mount()
    if mount is None:
        return set()
    with open(os.path.join(mount, "cgroup.controllers")) as f:
        return set(f.read().split())


def pidfd_exited(fd, within):
    """True when the process behind pidfd `fd` (None = already gone) exits within `within` s."""
    if fd is None:
        return True
    readable, _, _ = select.select([fd], [], [], within)
    return bool(readable)


class CgrunTestCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cgrun-cli-")
        self.env = dict(os.environ, CGRUN_CLI_TEST=self.tmp)
        self.pidfds = []
        self.cgroups_to_remove = []

    def tearDown(self):
        self.kill_tagged()
        for fd in self.pidfds:
            os.close(fd)
        mount = cgroup2_mount()
        for cg in reversed(self.cgroups_to_remove):
            self.remove_cgroup(os.path.join(mount, cg.lstrip("/")))
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- cleanup -------------------------------------------------------------------

    def tagged_pids(self):
        tag = b"CGRUN_CLI_TEST=" + self.tmp.encode() + b"\0"
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if tag in f.read():
                        pids.append(int(entry))
            except OSError:
                pass
        return pids

    def kill_tagged(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = [p for p in self.tagged_pids() if not self.is_zombie(p)]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    @staticmethod
    def is_zombie(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except OSError:
            return True

    @staticmethod
    def remove_cgroup(path):
        deadline = time.monotonic() + 5
        while os.path.isdir(path):
            try:
                os.rmdir(path)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    # --- running cgrun -------------------------------------------------------------

    def path(self, name):
        return os.path.join(self.tmp, name)

    def run_cgrun(self, args, stdin_data=b"", timeout=30):
        return subprocess.run([CGRUN] + args, input=stdin_data, capture_output=True,
                              env=self.env, timeout=timeout, cwd=self.tmp)

    def start_cgrun(self, args):
        """Starts cgrun in the background; its stdout and stderr go to files in the temp dir."""
        with open(self.path("cgrun.out"), "wb") as out, open(self.path("cgrun.err"), "wb") as err:
            return subprocess.Popen([CGRUN] + args, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, env=self.env, cwd=self.tmp)

    def background_stderr(self):
        with open(self.path("cgrun.err"), "rb") as f:
            return f.read()

    def run_json(self, args, **kw):
        """Runs cgrun with --json and returns (completed process, parsed report)."""
        report = self.path("report.json")
        if os.path.exists(report):
            os.unlink(report)
        proc = self.run_cgrun(["--json", report] + args, **kw)
        with open(report) as f:
            return proc, load_report(f)

    def stderr_lines(self, proc):
        return proc.stderr.decode(errors="replace").splitlines()

    def assert_rejected(self, args, *, needle=None):
        """cgrun exits 125 with one line on stderr and starts nothing."""
        marker = self.path("started")
        proc = self.run_cgrun(args)
        self.assertEqual(proc.returncode, 125, f"{args}: {proc.stderr!r}")
        lines = self.stderr_lines(proc)
        self.assertEqual(len(lines), 1, f"{args}: {lines}")
        self.assertTrue(lines[0].startswith("cgrun: "), lines)
        if needle:
            self.assertIn(needle, lines[0])
        self.assertEqual(proc.stdout, b"", args)
        self.assertFalse(os.path.exists(marker), f"{args} started the command")

    def command(self):
        """A command that leaves a marker file when it starts (see assert_rejected)."""
        return ["--", SH, "-c", "touch " + self.path("started")]

    # --- process trees -------------------------------------------------------------

    def escapee(self, name):
        """Shell text starting a setsid escapee that writes its pid to `name`; returns after."""
        f = self.path(name)
        return (f"setsid sh -c 'echo $$ > {f}.tmp && mv {f}.tmp {f} && exec sleep 60' "
                f"</dev/null >/dev/null 2>&1 & "
                f"while [ ! -e {f} ]; do sleep 0.01; done; ")

    def wait_pid_file(self, name, timeout=10):
        f = self.path(name)
        deadline = time.monotonic() + timeout
        while not os.path.exists(f):
            if time.monotonic() > deadline:
                self.fail(f"{name} was never written")
            time.sleep(0.01)
        with open(f) as fh:
            return int(fh.read())

    @staticmethod
    def has_child(pid, comm):
        """Whether process `pid` has a child that runs (has exec'd) `comm`."""
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
        except OSError:
            return False
        for k in kids:
            try:
                with open(f"/proc/{k}/comm") as f:
                    if f.read().strip() == comm:
                        return True
            except OSError:
                pass
        return False

    def watch(self, name, timeout=10):
        """pidfd of the process whose pid is in `name` (None when it is already gone)."""
        pid = self.wait_pid_file(name, timeout)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        self.pidfds.append(fd)
        return fd

    def assert_dead(self, fd, what):
        self.assertTrue(pidfd_exited(fd, 2.0), f"{what} is still alive")

    def assert_alive(self, fd, what):
        self.assertIsNotNone(fd, f"{what} was already gone")
        self.assertFalse(pidfd_exited(fd, 0.3), f"{what} died")

    def kill_watched(self, fd):
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        self.assertTrue(pidfd_exited(fd, 5.0))

    def assert_report_shape(self, r, command):
        keys = {"version", "kind", "command", "method", "fallbacks", "unit", "cgroup", "pid",
                "start_time", "exit_code", "signal", "timed_out", "cancelled", "termination",
                "kill", "remaining_processes", "wall_time_ms", "cpu_user_ms", "cpu_system_ms",
                "memory_peak_bytes", "oom_killed", "error"}
        self.assertTrue(keys.issubset(r.keys()), f"missing keys: {keys - r.keys()}")
        self.assertEqual(r["version"], 1)
        self.assertEqual(r["kind"], "run")
        self.assertEqual(r["command"], command)
        self.assertIsInstance(r["fallbacks"], list)
        for fb in r["fallbacks"]:
            self.assertIn(fb["method"], ("scope", "cgroup", "pgroup"))
            self.assertTrue(fb["reason"])
        for k in ("wall_time_ms", "cpu_user_ms", "cpu_system_ms"):
            self.assertIsInstance(r[k], (int, float))
            self.assertGreaterEqual(r[k], 0)
        self.assertIsInstance(r["timed_out"], bool)
        self.assertIsInstance(r["oom_killed"], bool)
        self.assertIsInstance(r["remaining_processes"], int)


class ExitStatus(CgrunTestCase):
    def test_zero(self):
        self.assertEqual(self.run_cgrun(["true"]).returncode, 0)

    def test_exit_code_passes_through(self):
        self.assertEqual(self.run_cgrun(["--", SH, "-c", "exit 3"]).returncode, 3)
        self.assertEqual(self.run_cgrun([SH, "-c", "exit 1"]).returncode, 1)

    def test_death_by_signal_is_128_plus_n(self):
        self.assertEqual(self.run_cgrun([SH, "-c", "kill -9 $$"]).returncode, 137)
        self.assertEqual(self.run_cgrun([SH, "-c", "kill -USR1 $$"]).returncode,
                         128 + signal.SIGUSR1)

    def test_not_found_is_127(self):
        for cmd in ("/nonexistent/cgrun-test-cmd", "cgrun-no-such-command"):
            proc = self.run_cgrun([cmd])
            self.assertEqual(proc.returncode, 127, cmd)
            lines = self.stderr_lines(proc)
            self.assertEqual(len(lines), 1, lines)
            self.assertTrue(lines[0].startswith("cgrun: "), lines)

    def test_not_executable_is_126(self):
        script = self.path("not-executable")
        with open(script, "w") as f:
            f.write("#!/bin/sh\ntouch " + self.path("ran") + "\n")
        os.chmod(script, 0o644)
        proc = self.run_cgrun([script])
        self.assertEqual(proc.returncode, 126)
        self.assertFalse(os.path.exists(self.path("ran")))
        self.assertEqual(self.run_cgrun([self.tmp]).returncode, 126)

    def test_timeout_is_124_whatever_the_command_does(self):
        start = time.monotonic()
        self.assertEqual(self.run_cgrun(["-t", "0.3", "sleep", "10"]).returncode, 124)
        self.assertLess(time.monotonic() - start, 5)
        # The command exits 0 on SIGTERM: still a timeout.
        proc = self.run_cgrun(["-t", "0.3", "-k", "5", "--", SH, "-c",
                               "trap 'exit 0' TERM; sleep 10 & wait"])
        self.assertEqual(proc.returncode, 124)

    def test_timeout_zero_means_no_limit(self):
        proc = self.run_cgrun(["-t", "0", SH, "-c", "sleep 0.3; exit 4"])
        self.assertEqual(proc.returncode, 4)


class BadInput(CgrunTestCase):
    def test_unknown_options(self):
        for opt in (["--bogus"], ["-x"], ["-vx"], ["--verbose=yes"], ["--ver"]):
            self.assert_rejected(opt + self.command())

    def test_bad_durations(self):
        for value in ("abc", "-1", "5x", "", "1e3", "inf", "nan", "1.2.3", "0x10", " 5", "5 s"):
            self.assert_rejected(["-t", value] + self.command(), needle="time interval")
            self.assert_rejected(["--kill-after=" + value] + self.command())

    def test_bad_signals(self):
        for value in ("NOSUCH", "0", "999", "", "-9", "SIG"):
            self.assert_rejected(["-s", value] + self.command(), needle="signal")

    def test_bad_method(self):
        self.assert_rejected(["-m", "systemd"] + self.command(), needle="method")

    def test_malformed_properties(self):
        for value in ("MemoryMax", "=10M", "Bogus=1", "memorymax=10M", "MemoryMax="):
            self.assert_rejected(["-p", value] + self.command(), needle="propert")

    def test_bad_unit_names(self):
        for value in ("bad/name", "x" * 300, "", "a b.scope", ".scope"):
            self.assert_rejected(["--unit", value] + self.command(), needle="unit")

    def test_missing_values(self):
        for opt in ("-t", "--timeout", "-k", "-s", "-m", "-p", "--unit", "--slice",
                    "--cgroup-parent", "--json"):
            self.assert_rejected([opt])

    def test_no_command(self):
        self.assert_rejected([])
        self.assert_rejected(["-t", "1"])
        self.assert_rejected(["--"])
        self.assert_rejected(["-v", "--"], needle="missing command")

    def test_check_takes_no_command(self):
        self.assert_rejected(["--check", SH, "-c", "touch " + self.path("started")])
        self.assert_rejected(["--check", "-m", "pgroup"])

    def test_check_and_setup_refuse_options_they_would_ignore(self):
        self.assert_rejected(["--check", "--uid", "65534"], needle="--uid has no effect with --check")
        self.assert_rejected(["--check", "-E", "A=1"], needle="--setenv has no effect with --check")
        self.assert_rejected(["--setup-cgroup", "-t", "5"], needle="--timeout has no effect with --setup-cgroup")
        self.assert_rejected(["--setup-cgroup", "-m", "cgroup"], needle="--method has no effect with --setup-cgroup")

    def test_unwritable_json_file(self):
        self.assert_rejected(["--json", "/nonexistent-cgrun-dir/report.json"] + self.command())


class Parsing(CgrunTestCase):
    def test_option_forms(self):
        for form in (["-t0.2"], ["-t", "0.2"], ["--timeout", "0.2"], ["--timeout=0.2"],
                     ["--time=0.2"], ["-vt0.2"], ["-t", "200ms"], ["-t", ".2"],
                     ["-t", "0.004m"], ["-t", "0.0001h"]):
            proc = self.run_cgrun(form + ["sleep", "10"])
            self.assertEqual(proc.returncode, 124, form)

    def test_units_that_do_not_expire(self):
        for value in ("1h", "2m", "30", "1.5", "5000ms"):
            self.assertEqual(self.run_cgrun(["-t", value, "true"]).returncode, 0, value)

    def test_options_stop_at_the_command(self):
        proc = self.run_cgrun(["-t", "5", SH, "-c", 'printf "%s\\n" "$*"', "sh", "-t", "1", "-v",
                               "--json", "x"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, b"-t 1 -v --json x\n")
        self.assertEqual(proc.stderr, b"")
        self.assertFalse(os.path.exists(self.path("x")))

    def test_double_dash_ends_options(self):
        proc = self.run_cgrun(["--", SH, "-c", "echo ok"])
        self.assertEqual(proc.stdout, b"ok\n")
        # After "--" an option-like word is the command.
        self.assertEqual(self.run_cgrun(["--", "--version"]).returncode, 127)

    def test_help_and_version(self):
        proc = self.run_cgrun(["--help"])
        self.assertEqual(proc.returncode, 0)
        self.assertIn(b"Usage: cgrun", proc.stdout)
        for opt in (b"--timeout", b"--kill-after", b"--signal", b"--method", b"--user",
                    b"--system", b"--slice", b"--unit", b"--cgroup-parent", b"--property",
                    b"--keep-orphans", b"--json", b"--verbose", b"--check", b"--version",
                    b"--preserve-status", b"--foreground", b"--quiet"):
            self.assertIn(opt, proc.stdout)
        proc = self.run_cgrun(["--version"])
        self.assertEqual(proc.returncode, 0)
        self.assertRegex(proc.stdout.decode(), r"^cgrun \d+\.\d+\.\d+\n$")


class Schema(CgrunTestCase):
    """doc/*.schema.json describe the reports, and tell a broken report from a good one."""

    def test_broken_reports_fail_validation(self):
        _, good = self.run_json(["-t", "0.3", "--", SH, "-c", "setsid sleep 30 & sleep 30"])
        self.assertEqual(report_schema.problems(good), [])
        self.assertTrue(good["leftovers"])
        broken = {
            "method auto": dict(good, method="auto"),
            "no termination": {k: v for k, v in good.items() if k != "termination"},
            "unknown termination": dict(good, termination="finished"),
            "pid null but a method": dict(good, pid=None),
            "start_time not UTC": dict(good, start_time=good["start_time"].replace("Z", "+01:00")),
            "escaped without escaped_via": dict(good, leftovers=[
                dict(good["leftovers"][0], escaped=True, escaped_via=None)]),
            "a check report": dict(good, kind="check"),
        }
        for what, doc in broken.items():
            self.assertNotEqual(report_schema.problems(doc), [], what)
            with self.assertRaises(AssertionError, msg=what):
                report_schema.validate(doc)
        check = {"version": 1, "kind": "check", "ok": True, "host": {}, "proofs": []}
        self.assertNotEqual(report_schema.problems(check, "check"), [], "a host without its keys")
        self.assertNotEqual(report_schema.problems(good, "check"), [], "a run report is no check report")


class Stdio(CgrunTestCase):
    def test_stdin_stdout_stderr_pass_through(self):
        proc = self.run_cgrun(["--", SH, "-c", "cat; echo err >&2; echo out"],
                              stdin_data=b"hello\n")
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(proc.stdout, b"hello\nout\n")
        self.assertEqual(proc.stderr, b"err\n")

    def test_json_to_stdout(self):
        proc = self.run_cgrun(["--json", "-", "--", "true"])
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(parse_report(proc.stdout)["exit_code"], 0)


class Containment(CgrunTestCase):
    def test_timeout_kills_a_setsid_escapee(self):
        proc = self.start_cgrun(["-t", "0.5", "--", SH, "-c", self.escapee("esc") + "exec sleep 60"])
        esc = self.watch("esc")
        self.assertEqual(proc.wait(30), 124)
        self.assert_dead(esc, "the setsid escapee")

    def test_orphans_are_killed_by_default(self):
        proc, r = self.run_json(["--", SH, "-c", f"sleep 60 >/dev/null 2>&1 & echo $! > {self.path('orphan')}"])
        orphan = self.watch("orphan")
        self.assertEqual(proc.returncode, 0)
        self.assert_dead(orphan, "the orphan")
        self.assertEqual(r["remaining_processes"], 0)

    def test_keep_orphans_leaves_them_running(self):
        proc, r = self.run_json(["--keep-orphans", "--", SH, "-c",
                                 f"sleep 60 >/dev/null 2>&1 & echo $! > {self.path('orphan')}"])
        orphan = self.watch("orphan")
        self.assertEqual(proc.returncode, 0)
        self.assert_alive(orphan, "the orphan")
        self.assertGreaterEqual(r["remaining_processes"], 1)
        self.kill_watched(orphan)
        if r["method"] == "cgroup":
            self.cgroups_to_remove.append(r["cgroup"])

    def test_keep_orphans_says_when_the_leaf_cannot_be_marked_kept(self):
        # The payload uses up the user xattrs kernfs allows on its own leaf (128), so cgrun's
        # mark user.cgrun.kept cannot be set: the hand-over must say so, not stay silent.
        fill = ("import os\n"
                "d = [l[3:].strip() for l in open('/proc/self/cgroup') if l.startswith('0::')][0]\n"
                f"p = os.path.join({cgroup2_mount()!r}, d.lstrip('/'))\n"
                "for i in range(1000):\n"
                "    try: os.setxattr(p, 'user.fill%d' % i, b'x')\n"
                "    except OSError: break\n")
        with open(self.path("fill.py"), "w") as f:
            f.write(fill)
        proc, r = self.run_json(["-m", "cgroup", "--on-leak=keep", "--", SH, "-c",
                                 f"python3 {self.path('fill.py')}; sleep 60 >/dev/null 2>&1 & "
                                 f"echo $! > {self.path('orphan')}"])
        if r.get("method") != "cgroup":
            self.skipTest("no cgroup method here: " + proc.stderr.decode())
        self.cgroups_to_remove.append(r["cgroup"])
        orphan = self.watch("orphan")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIsNotNone(r["error"])
        self.assertIn("not marked kept", r["error"])
        self.assertIn("not marked kept", proc.stderr.decode())
        self.kill_watched(orphan)

    def test_kill_after_escalates_when_term_is_ignored(self):
        start = time.monotonic()
        proc, r = self.run_json(["-t", "0.3", "-k", "0.5", "--", SH, "-c",
                                 "trap '' TERM; sleep 10"])
        self.assertEqual(proc.returncode, 124)
        self.assertGreaterEqual(time.monotonic() - start, 0.8)
        self.assertTrue(r["timed_out"])
        self.assertEqual(r["kill"]["graceful_signal"], "TERM")
        self.assertTrue(r["kill"]["escalated"])
        self.assertEqual(r["signal"], "KILL")
        self.assertGreaterEqual(r["wall_time_ms"], 750)

    def test_kill_after_not_needed_when_term_is_obeyed(self):
        start = time.monotonic()
        proc, r = self.run_json(["-t", "0.3", "-k", "10", "--", "sleep", "10"])
        self.assertEqual(proc.returncode, 124)
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual(r["kill"]["graceful_signal"], "TERM")
        self.assertFalse(r["kill"]["escalated"])
        self.assertEqual(r["signal"], "TERM")

    def test_signal_option_picks_the_graceful_signal(self):
        for sig in ("USR1", "SIGUSR1", "usr1", str(int(signal.SIGUSR1))):
            proc, r = self.run_json(["-t", "0.3", "-k", "10", "-s", sig, "--", SH, "-c",
                                     "trap 'echo got-usr1; exit 0' USR1; sleep 10 & wait"])
            self.assertEqual(proc.returncode, 124, sig)
            self.assertEqual(proc.stdout, b"got-usr1\n", sig)
            self.assertEqual(r["kill"]["graceful_signal"], "USR1", sig)
            self.assertFalse(r["kill"]["escalated"], sig)

    def test_pgroup_does_not_contain_a_setsid_escapee(self):
        # The documented limitation of the process-group method.
        proc, r = self.run_json(["-m", "pgroup", "-t", "0.5", "--", SH, "-c",
                                 self.escapee("esc") + "exec sleep 60"])
        esc = self.watch("esc")
        self.assertEqual(proc.returncode, 124)
        self.assertEqual(r["method"], "pgroup")
        self.assert_alive(esc, "the escapee under -m pgroup")
        self.kill_watched(esc)

    def test_pgroup_still_kills_its_group(self):
        proc, r = self.run_json(["-m", "pgroup", "-t", "0.3", "--", SH, "-c",
                                 f"sleep 60 & echo $! > {self.path('child')}; wait"])
        child = self.watch("child")
        self.assertEqual(proc.returncode, 124)
        self.assert_dead(child, "a same-group child under -m pgroup")



class Leaks(CgrunTestCase):
    """What the command left behind: listed in the report, and --on-leak (issue 10)."""

    # A setsid daemon and a double-forked one (fork, setsid, fork), each writing its pid.
    def daemons(self):
        a, b = self.path("daemon"), self.path("grandchild")
        return (f"setsid sh -c 'echo $$ > {a}.tmp && mv {a}.tmp {a} && exec sleep 61' </dev/null >/dev/null 2>&1 & "
                f"(setsid sh -c 'sh -c \"echo \\$\\$ > {b}.tmp && mv {b}.tmp {b} && exec sleep 62\" &' "
                f"</dev/null >/dev/null 2>&1 &); "
                f"while [ ! -e {a} ] || [ ! -e {b} ]; do sleep 0.01; done; "
                # listed once they run sleep, not the shell that wrote the pid just before
                f"for f in {a} {b}; do p=$(cat $f); "
                f"while [ \"$(cat /proc/$p/comm 2>/dev/null)\" != sleep ]; do sleep 0.01; done; done; ")

    def leftover(self, r, pid):
        found = [l for l in r["leftovers"] if l["pid"] == pid]
        self.assertEqual(len(found), 1, f"pid {pid} not among the leftovers {r['leftovers']}")
        l = found[0]
        self.assertEqual(set(l.keys()), {"pid", "command", "escaped", "escaped_via", "age_ms"})
        self.assertGreaterEqual(l["age_ms"], 0)
        return l

    def test_escaped_daemons_are_listed_and_killed(self):
        for method in ([], ["-m", "pgroup"], ["-m", "subreaper"]):
            with self.subTest(method=method):
                for f in ("daemon", "grandchild"):
                    if os.path.exists(self.path(f)):
                        os.unlink(self.path(f))
                proc, r = self.run_json(method + ["--", SH, "-c", self.daemons() + "exit 0"])
                self.assertEqual(proc.returncode, 0, proc.stderr)
                d, g = self.watch("daemon"), self.watch("grandchild")
                if method == ["-m", "pgroup"]:
                    # pgroup cannot see them (they left its group): nothing to list or kill
                    self.assertEqual(r["leftovers"], [])
                    self.kill_watched(d)
                    self.kill_watched(g)
                    continue
                self.assertEqual(r["leftovers_total"], 2, r["leftovers"])
                for name, sleep_arg in (("daemon", "61"), ("grandchild", "62")):
                    l = self.leftover(r, self.wait_pid_file(name))
                    self.assertEqual(l["command"], ["sleep", sleep_arg])
                    self.assertTrue(l["escaped"])
                    self.assertEqual(l["escaped_via"], "setsid")
                self.assert_dead(d, "the setsid daemon")
                self.assert_dead(g, "the double-forked daemon")

    def test_a_plain_background_child_is_not_escaped(self):
        for method in ([], ["-m", "pgroup"], ["-m", "subreaper"]):
            with self.subTest(method=method):
                # the pid is written once the child runs sleep, not the shell it forked first
                proc, r = self.run_json(method + ["--", SH, "-c",
                                        "sleep 63 </dev/null >/dev/null 2>&1 & p=$!; "
                                        "while [ \"$(cat /proc/$p/comm)\" != sleep ]; do sleep 0.01; done; "
                                        f"echo $p > {self.path('bg')}"])
                bg = self.watch("bg")
                self.assertEqual(proc.returncode, 0)
                l = self.leftover(r, self.wait_pid_file("bg"))
                self.assertEqual(l["command"], ["sleep", "63"])
                self.assertFalse(l["escaped"])
                self.assertIsNone(l["escaped_via"])
                self.assert_dead(bg, "the background child")
                os.unlink(self.path("bg"))

    def test_on_leak_fail_exits_123_and_names_them(self):
        proc, r = self.run_json(["--on-leak=fail", "--", SH, "-c", self.daemons() + "exit 0"])
        self.assertEqual(proc.returncode, 123)
        err = self.stderr_lines(proc)
        for name, arg in (("daemon", "61"), ("grandchild", "62")):
            pid = self.wait_pid_file(name)
            self.assertIn(f"cgrun: left running: pid {pid} (sleep {arg}), escaped via setsid", err)
        self.assertTrue(any(re.fullmatch(r"cgrun: /bin/sh left 2 process\(es\) running.*123\)", l) for l in err), err)
        self.assert_dead(self.watch("daemon"), "the daemon")

    def test_the_command_s_own_failure_wins_over_123(self):
        proc, _ = self.run_json(["--on-leak=fail", "--", SH, "-c", self.daemons() + "exit 4"])
        self.assertEqual(proc.returncode, 4)
        proc, _ = self.run_json(["--on-leak=fail", "-t", "0.5", "--", SH, "-c", "sleep 60 & sleep 61"])
        self.assertEqual(proc.returncode, 124)

    def test_no_leak_no_123(self):
        proc, r = self.run_json(["--on-leak=fail", "--", SH, "-c", "sleep 0.01 & wait"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(r["leftovers"], [])
        self.assertEqual(r["leftovers_total"], 0)

    def test_allow_leak_exempts_a_matching_one_only(self):
        proc, _ = self.run_json(["--on-leak=fail", "--allow-leak", "sleep 61", "--", SH, "-c",
                                 self.daemons() + "exit 0"])
        self.assertEqual(proc.returncode, 123)
        err = self.stderr_lines(proc)
        self.assertFalse(any("(sleep 61)" in l for l in err), err)
        self.assertTrue(any("(sleep 62)" in l for l in err), err)
        os.unlink(self.path("daemon"))
        os.unlink(self.path("grandchild"))
        proc, _ = self.run_json(["--on-leak=fail", "--allow-leak", "sleep 6[12]", "--", SH, "-c",
                                 self.daemons() + "exit 0"])
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_on_leak_keep_leaves_them_running(self):
        proc, r = self.run_json(["--on-leak=keep", "--", SH, "-c", self.daemons() + "exit 0"])
        self.assertEqual(proc.returncode, 0)
        d, g = self.watch("daemon"), self.watch("grandchild")
        self.assert_alive(d, "the kept daemon")
        self.assert_alive(g, "the kept grandchild")
        self.assertEqual(r["leftovers_total"], 2)
        self.kill_watched(d)
        self.kill_watched(g)
        if r["method"] == "cgroup":
            self.cgroups_to_remove.append(r["cgroup"])

    def test_timeout_lists_what_was_stopped(self):
        proc, r = self.run_json(["-t", "0.5", "--", SH, "-c", "sleep 64 & sleep 65 & wait"])
        self.assertEqual(proc.returncode, 124)
        commands = sorted(tuple(l["command"]) for l in r["leftovers"])
        self.assertEqual(r["leftovers_total"], 3, r["leftovers"])
        self.assertIn(("sleep", "64"), commands)
        self.assertIn(("sleep", "65"), commands)
        self.assertIn((SH, "-c", "sleep 64 & sleep 65 & wait"), commands)

    def test_more_than_the_cap(self):
        proc, r = self.run_json(["--", SH, "-c",
                                 "i=0; while [ $i -lt 130 ]; do sleep 66 & i=$((i+1)); done; exit 0"])
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(r["leftovers_total"], 130)
        self.assertEqual(len(r["leftovers"]), 100)

    def test_bad_policies(self):
        for args in (["--on-leak=bogus"], ["--allow-leak", "x"], ["--on-leak=fail", "--allow-leak="]):
            proc = self.run_cgrun(args + ["true"])
            self.assertEqual(proc.returncode, 125, args)
            self.assertEqual(len(self.stderr_lines(proc)), 1, proc.stderr)

class SetupCgroup(CgrunTestCase):
    """cgrun --setup-cgroup (issue 11): processes move to a leaf, controllers are enabled."""

    def test_refuses_the_root_of_the_hierarchy(self):
        if os.path.exists(os.path.join(cgroup2_mount(), "cgroup.type")):
            self.skipTest("/ is a cgroup namespace's root here, which the setup step may set up")
        proc = self.run_cgrun(["--setup-cgroup", "--cgroup-parent", "/"])
        self.assertEqual(proc.returncode, 125)
        self.assertEqual(len(self.stderr_lines(proc)), 1, proc.stderr)
        self.assertIn("root of the cgroup hierarchy", proc.stderr.decode())

    def cgroup_with_sleeper(self, name, fill_init_xattrs=False):
        """A new cgroup `name` below our own holding one `sleep 60`: (cgroup path, its
        directory, the sleeper). With fill_init_xattrs, its leaf init exists already with
        every user xattr kernfs allows (128) used up; None when there is no such limit."""
        mine = None
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    mine = line[3:].strip()
        cg = (mine.rstrip("/") if mine and mine != "/" else "") + "/" + name
        d = os.path.join(cgroup2_mount(), cg.lstrip("/"))
        os.mkdir(d)
        self.cgroups_to_remove += [cg, cg + "/init"]
        if fill_init_xattrs:
            os.mkdir(os.path.join(d, "init"))
            for i in range(1000):
                try:
                    os.setxattr(os.path.join(d, "init"), f"user.fill{i}", b"x")
                except OSError:
                    break
            else:
                return None
        sleeper = subprocess.Popen(["sleep", "60"], env=self.env)
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(sleeper.pid))
        return cg, d, sleeper

    def setup_json(self, cg):
        proc = self.run_cgrun(["--setup-cgroup", "--cgroup-parent", cg, "--json", "-"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc, json.loads(proc.stdout)

    def test_moves_the_processes_and_is_idempotent(self):
        cg, d, sleeper = self.cgroup_with_sleeper(f"cgrun-cli-setup-{os.getpid()}")
        _, r = self.setup_json(cg)
        self.assertEqual(r["moved"], [sleeper.pid])
        self.assertEqual(r["leaf"], cg + "/init")
        self.assertTrue(r["changed"])
        with open(os.path.join(d, "init", "cgroup.procs")) as f:
            self.assertEqual(f.read().split(), [str(sleeper.pid)])
        with open(os.path.join(d, "cgroup.procs")) as f:
            self.assertEqual(f.read().split(), [])
        self.assertIsNone(sleeper.poll(), "the moved process died")
        _, r2 = self.setup_json(cg)
        self.assertEqual((r2["moved"], r2["enabled"], r2["changed"], r2["warnings"]), ([], [], False, []))

    def test_says_when_the_leaf_cannot_be_marked(self):
        # A leaf "init" that exists already and whose user xattrs are used up: the processes
        # move, and the missing mark is a warning, not silence.
        made = self.cgroup_with_sleeper(f"cgrun-cli-setup-mark-{os.getpid()}", fill_init_xattrs=True)
        if made is None:
            self.skipTest("user xattrs on this cgroupfs have no limit to use up")
        cg, _, sleeper = made
        proc, r = self.setup_json(cg)
        self.assertEqual(r["moved"], [sleeper.pid])
        self.assertEqual(len(r["warnings"]), 1, r)
        self.assertIn("--cgroup-parent " + cg, r["warnings"][0])
        self.assertIn("cgrun: warning: could not mark " + cg + "/init", proc.stderr.decode())

    def test_takes_no_command(self):
        proc = self.run_cgrun(["--setup-cgroup", "true"])
        self.assertEqual(proc.returncode, 125)

class SpawnerDeath(CgrunTestCase):
    """cgrun itself SIGKILLed (a CI runner cancelling a job): its guard kills the tree."""

    def cgroup_of(self, pid):
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
        return None

    def sigkill_cgrun(self, args, escapes=True):
        child = self.escapee("esc") if escapes else \
            f"sh -c 'echo $$ > {self.path('esc')}; exec sleep 60' </dev/null >/dev/null 2>&1 & "
        proc = self.start_cgrun(args + ["--", SH, "-c", child + f"echo $$ > {self.path('main')}; exec sleep 60"])
        esc, main = self.watch("esc"), self.watch("main")
        cg = self.cgroup_of(self.wait_pid_file("main"))
        self.assertIsNotNone(esc)
        self.assertIsNotNone(main)
        start = time.monotonic()
        proc.kill()
        proc.wait(10)
        self.assertTrue(pidfd_exited(esc, 1.0), "the escapee outlived cgrun's SIGKILL by 1 s")
        self.assertTrue(pidfd_exited(main, 1.0), "the command outlived cgrun's SIGKILL by 1 s")
        took = time.monotonic() - start
        if cg and cg != "/" and "cgrun" in cg:
            leaf = os.path.join(cgroup2_mount(), cg.lstrip("/"))
            while os.path.exists(leaf) and time.monotonic() - start < 2:
                time.sleep(0.01)
            self.assertFalse(os.path.exists(leaf), f"{cg} is left behind")
        return took

    def test_sigkill_with_a_timeout(self):
        took = self.sigkill_cgrun(["-t", "30"])
        self.assertLess(took, 1.0)

    def test_sigkill_without_a_timeout(self):
        self.sigkill_cgrun([])

    def test_sigkill_pgroup(self):
        # pgroup reaches only its process group: the child stays in it here.
        self.sigkill_cgrun(["-m", "pgroup"], escapes=False)


class TimeoutHabits(CgrunTestCase):
    """What users of GNU timeout(1) type (issue 12)."""

    def test_duration_operand_is_the_timeout(self):
        start = time.monotonic()
        proc, r = self.run_json(["0.3", "sleep", "10"])
        self.assertEqual(proc.returncode, 124, proc.stderr)
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual(r["command"], ["sleep", "10"])
        self.assertEqual(self.run_cgrun(["--", "10", SH, "-c", "exit 3"]).returncode, 3)
        self.assertEqual(self.run_cgrun(["1d", "true"]).returncode, 0)

    def test_duration_operand_rule_has_limits(self):
        # With -t given, or as the only operand, a number is the command.
        self.assertEqual(self.run_cgrun(["-t", "5", "10", "true"]).returncode, 127)
        self.assertEqual(self.run_cgrun(["10"]).returncode, 127)

    def test_signal_without_kill_after_is_delivered(self):
        proc, r = self.run_json(["-s", "INT", "-t", "0.3", "--", SH, "-c",
                                 "trap 'echo got-int; exit 0' INT; sleep 10"])
        self.assertEqual(proc.returncode, 124)
        self.assertEqual(proc.stdout, b"got-int\n")
        self.assertEqual(r["kill"]["graceful_signal"], "INT")
        self.assertFalse(r["kill"]["escalated"])

    def test_signal_without_kill_after_escalates_after_the_default_grace(self):
        start = time.monotonic()
        proc, r = self.run_json(["-s", "INT", "-t", "0.2", "--", SH, "-c",
                                 "trap '' INT; sleep 20"])
        elapsed = time.monotonic() - start
        self.assertEqual(proc.returncode, 124)
        self.assertEqual(r["kill"]["graceful_signal"], "INT")
        self.assertTrue(r["kill"]["escalated"])
        self.assertGreaterEqual(elapsed, 0.2 + 5 - 0.1)  # the documented 5 s default
        self.assertLess(elapsed, 15)

    def test_signal_with_kill_after_zero_is_refused(self):
        proc = self.run_cgrun(["-s", "INT", "-k", "0", "-t", "1", "true"])
        self.assertEqual(proc.returncode, 125)
        self.assertEqual(len(self.stderr_lines(proc)), 1, proc.stderr)

    def test_no_signal_still_kills_at_once(self):
        start = time.monotonic()
        proc, r = self.run_json(["-t", "0.3", "--", SH, "-c", "trap '' TERM INT; sleep 20"])
        self.assertEqual(proc.returncode, 124)
        self.assertIsNone(r["kill"]["graceful_signal"])
        self.assertLess(time.monotonic() - start, 3)

    def test_preserve_status(self):
        proc = self.run_cgrun(["--preserve-status", "-t", "0.3", "sleep", "10"])
        self.assertEqual(proc.returncode, 128 + signal.SIGKILL)
        proc = self.run_cgrun(["--preserve-status", "-s", "TERM", "--", "0.3", SH, "-c",
                               "trap 'exit 3' TERM; sleep 10 & wait"])
        self.assertEqual(proc.returncode, 3)
        self.assertEqual(self.run_cgrun(["--preserve-status", SH, "-c", "exit 4"]).returncode, 4)

    def test_foreground_is_accepted_and_still_contains(self):
        proc = self.start_cgrun(["--foreground", "0.5", SH, "-c",
                                 self.escapee("esc") + "exec sleep 60"])
        esc = self.watch("esc")
        self.assertEqual(proc.wait(30), 124, self.background_stderr())
        self.assert_dead(esc, "the setsid escapee under --foreground")

    def test_help_names_the_new_options(self):
        out = self.run_cgrun(["--help"]).stdout
        for word in (b"--preserve-status", b"--foreground", b"DURATION COMMAND", b"5s", b" d"):
            self.assertIn(word, out)


class StopSignals(CgrunTestCase):
    def stop_with(self, sig, extra=()):
        esc_file, main_file, report = f"esc-{sig}", f"main-{sig}", self.path(f"r-{sig}.json")
        proc = self.start_cgrun(list(extra) + ["--json", report, "--", SH, "-c",
                                               self.escapee(esc_file) +
                                               f"echo $$ > {self.path(main_file)}.tmp && mv {self.path(main_file)}.tmp {self.path(main_file)}; "
                                               f"exec sleep 60"])
        esc = self.watch(esc_file)
        main = self.watch(main_file)
        start = time.monotonic()
        proc.send_signal(sig)
        rc = proc.wait(30)
        elapsed = time.monotonic() - start
        self.assertEqual(rc, 128 + sig, f"signal {sig}: {self.background_stderr()!r}")
        self.assert_dead(main, "the main process")
        self.assert_dead(esc, "the setsid escapee")
        with open(report) as f:
            r = load_report(f)
        self.assertFalse(r["timed_out"])
        self.assertEqual(r["termination"], "cancelled")
        self.assertEqual(r["remaining_processes"], 0)
        return r, elapsed

    def test_sigterm(self):
        self.stop_with(signal.SIGTERM)

    def test_sigint(self):
        self.stop_with(signal.SIGINT)

    def test_sighup_and_sigquit(self):
        self.stop_with(signal.SIGHUP)
        self.stop_with(signal.SIGQUIT)

    def test_stop_uses_the_kill_policy(self):
        r, elapsed = self.stop_with(signal.SIGTERM, ["-k", "5"])
        self.assertEqual(r["kill"]["graceful_signal"], "TERM")
        self.assertFalse(r["kill"]["escalated"])
        self.assertLess(elapsed, 4)


class JsonReport(CgrunTestCase):
    def test_success(self):
        proc, r = self.run_json(["--", SH, "-c", "exit 0"])
        self.assertEqual(proc.returncode, 0)
        self.assert_report_shape(r, [SH, "-c", "exit 0"])
        self.assertEqual(r["method"], AUTO)
        self.assertGreater(r["pid"], 0)
        self.assertEqual(r["exit_code"], 0)
        self.assertEqual(r["termination"], "exited")
        # RFC 3339, UTC, milliseconds; the run started moments ago.
        started = datetime.datetime.strptime(r["start_time"], "%Y-%m-%dT%H:%M:%S.%f%z")
        age = datetime.datetime.now(datetime.timezone.utc) - started
        self.assertRegex(r["start_time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertLess(abs(age.total_seconds()), 60)
        self.assertIsNone(r["signal"])
        self.assertFalse(r["timed_out"])
        self.assertIsNone(r["kill"])
        self.assertEqual(r["remaining_processes"], 0)
        self.assertIsNone(r["error"])
        self.assertIsNotNone(r["cgroup"])
        if AUTO == "scope":
            self.assertTrue(r["unit"].endswith(".scope"))
            self.assertEqual(r["fallbacks"], [])
            self.assertIsNone(r["method_reason"])
        elif DELEGATED:
            # the Delegate=yes unit that owns the subtree (with-systemd.sh's service)
            self.assertTrue(r["unit"].endswith(".service"), r["unit"])
            self.assertEqual(r["fallbacks"], [])
            self.assertIn("is delegated to this process", r["method_reason"])
        else:
            self.assertIsNone(r["unit"])
            self.assertEqual([f["method"] for f in r["fallbacks"]], ["scope"])
            self.assertIsNone(r["method_reason"])

    def test_nonzero_exit(self):
        proc, r = self.run_json([SH, "-c", "exit 3"])
        self.assertEqual(proc.returncode, 3)
        self.assert_report_shape(r, [SH, "-c", "exit 3"])
        self.assertEqual(r["exit_code"], 3)
        self.assertIsNone(r["signal"])
        self.assertIsNone(r["error"])

    def test_timeout(self):
        proc, r = self.run_json(["-t", "0.3", "sleep", "10"])
        self.assertEqual(proc.returncode, 124)
        self.assert_report_shape(r, ["sleep", "10"])
        self.assertTrue(r["timed_out"])
        self.assertEqual(r["termination"], "timeout")
        self.assertIsNone(r["exit_code"])
        self.assertEqual(r["signal"], "KILL")
        self.assertTrue(r["kill"]["mechanism"])
        self.assertIsNone(r["kill"]["graceful_signal"])
        self.assertEqual(r["remaining_processes"], 0)
        self.assertGreaterEqual(r["wall_time_ms"], 250)
        self.assertIsNone(r["error"])

    def test_signal_death(self):
        proc, r = self.run_json([SH, "-c", "kill -9 $$"])
        self.assertEqual(proc.returncode, 137)
        self.assertIsNone(r["exit_code"])
        self.assertEqual(r["signal"], "KILL")
        self.assertFalse(r["timed_out"])
        self.assertEqual(r["termination"], "signaled")

    def test_not_found(self):
        proc, r = self.run_json(["cgrun-no-such-command", "arg"])
        self.assertEqual(proc.returncode, 127)
        self.assert_report_shape(r, ["cgrun-no-such-command", "arg"])
        self.assertTrue(r["error"])
        self.assertIsNone(r["pid"])
        self.assertIsNone(r["method"])  # nothing was started: not "auto"
        self.assertIsNone(r["start_time"])
        self.assertEqual(r["termination"], "start-failed")
        self.assertIsNone(r["exit_code"])

    def test_containment_failure(self):
        if SYSTEMD:
            self.skipTest("systemd is reachable here")
        proc, r = self.run_json(["-m", "scope", "--", SH, "-c", "touch " + self.path("started")])
        self.assertEqual(proc.returncode, 125)
        self.assertTrue(r["error"])
        self.assertIsNone(r["method"])
        self.assertEqual(r["termination"], "start-failed")
        self.assertFalse(os.path.exists(self.path("started")))


class Methods(CgrunTestCase):
    def test_auto_picks_the_expected_method(self):
        proc, r = self.run_json(["-m", "auto", "true"])
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(r["method"], AUTO)

    def test_explicit_methods(self):
        wanted = ["cgroup", "subreaper", "pgroup"] + (["scope"] if SYSTEMD else [])
        for m in wanted:
            proc, r = self.run_json(["-m", m, "--", SH, "-c", "cat /proc/self/cgroup"])
            self.assertEqual(proc.returncode, 0, m)
            self.assertEqual(r["method"], m)
            self.assertEqual(r["fallbacks"], [], m)
            if m in ("cgroup", "scope"):
                own = [l for l in proc.stdout.decode().splitlines() if l.startswith("0::")]
                self.assertEqual(own, ["0::" + r["cgroup"]], m)

    def test_auto_in_a_delegated_unit_takes_a_leaf_of_it(self):
        """Inside a Delegate=yes unit auto runs the tree in a leaf below the unit's cgroup (no
        scope per child), and the tree is held as under -m cgroup: escapees die."""
        if not DELEGATED:
            self.skipTest("not inside a Delegate=yes unit")
        with open("/proc/self/cgroup") as f:
            own = [l[3:].strip() for l in f if l.startswith("0::")][0]
        # at the timeout, with a setsid escapee
        proc, r = self.run_json(["-t", "0.5", "--", SH, "-c", "cat /proc/self/cgroup; " +
                                 self.escapee("esc") + "exec sleep 60"])
        esc = self.watch("esc")
        self.assertEqual(proc.returncode, 124, proc.stderr)
        self.assertEqual(r["method"], "cgroup")
        self.assertEqual(r["unit"], own.rsplit("/", 1)[1])  # the unit owning the subtree
        self.assertTrue(r["cgroup"].startswith(own + "/cgrun-"), (own, r["cgroup"]))
        self.assertIn("0::" + r["cgroup"], proc.stdout.decode().splitlines())
        self.assertIn(own + " is delegated", r["method_reason"])
        self.assertEqual(r["kill"]["mechanism"], "cgroup.kill")
        self.assertEqual(r["remaining_processes"], 0)
        self.assert_dead(esc, "the setsid escapee at the timeout")
        # when the main process exits by itself
        proc, r = self.run_json(["--", SH, "-c", self.escapee("esc2") + "exit 3"])
        esc = self.watch("esc2")
        self.assertEqual(proc.returncode, 3, proc.stderr)
        self.assertEqual(r["method"], "cgroup")
        self.assertEqual(r["remaining_processes"], 0)
        self.assert_dead(esc, "the setsid escapee after the main process exited")
        self.assertFalse(os.path.exists(os.path.join(cgroup2_mount(), r["cgroup"].lstrip("/"))))

    def test_auto_in_a_sub_leaf_of_a_delegated_unit(self):
        """A service that moved itself into a leaf of its Delegate=yes cgroup (systemd's advice:
        no processes in inner cgroups) is still inside its delegated subtree: auto takes a
        cgroup below that leaf."""
        if not DELEGATED:
            self.skipTest("not inside a Delegate=yes unit")
        with open("/proc/self/cgroup") as f:
            own = [l[3:].strip() for l in f if l.startswith("0::")][0]
        worker = own + f"/worker-{os.getpid()}"
        os.mkdir(os.path.join(cgroup2_mount(), worker.lstrip("/")))
        self.cgroups_to_remove.append(worker)
        report = self.path("sub.json")
        procs = os.path.join(cgroup2_mount(), worker.lstrip("/"), "cgroup.procs")
        proc = subprocess.run([SH, "-c", f'echo $$ > {procs} && exec "$@"', "sh", CGRUN, "--json", report,
                               "--", SH, "-c", self.escapee("esc") + "exit 0"],
                              env=self.env, capture_output=True, timeout=30)
        esc = self.watch("esc")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        with open(report) as f:
            r = load_report(f)
        self.assertEqual(r["method"], "cgroup", r)
        self.assertEqual(r["unit"], own.rsplit("/", 1)[1])
        self.assertTrue(r["cgroup"].startswith(worker + "/cgrun-"), (worker, r["cgroup"]))
        self.assertIn(worker + ", in " + own + ", is delegated", r["method_reason"])
        self.assert_dead(esc, "the setsid escapee after the main process exited")

    def test_delegated_scope(self):
        """--delegated-scope: the tree in a leaf of a Delegate=yes scope cgrun-<pid>.scope,
        held as under -m cgroup (escapees die), and the scope gone after cgrun exits."""
        if not SYSTEMD:
            self.assert_rejected(["--delegated-scope"] + self.command())
            return
        self.assert_rejected(["--delegated-scope", "--cgroup-parent", "/x"] + self.command(),
                             needle="exclude")
        proc, r = self.run_json(["--delegated-scope", "-t", "0.5", "--", SH, "-c",
                                 "cat /proc/self/cgroup; " + self.escapee("esc") + "exec sleep 60"])
        esc = self.watch("esc")
        self.assertEqual(proc.returncode, 124, proc.stderr)
        self.assertEqual(r["method"], "cgroup")
        self.assertRegex(r["unit"], r"^cgrun-[0-9]+\.scope$")
        self.assertIn("/" + r["unit"] + "/cgrun-", r["cgroup"])
        self.assertIn("0::" + r["cgroup"], proc.stdout.decode().splitlines())
        self.assertEqual(r["remaining_processes"], 0)
        self.assert_dead(esc, "the setsid escapee at the timeout")
        scope_dir = os.path.join(cgroup2_mount(), r["cgroup"].lstrip("/").rsplit("/", 1)[0])
        for _ in range(300):
            if not os.path.exists(scope_dir):
                break
            time.sleep(0.01)
        self.assertFalse(os.path.exists(scope_dir), "the scope outlived cgrun")

    def test_scope_without_systemd_fails(self):
        if SYSTEMD:
            self.skipTest("systemd is reachable here")
        for extra in ([], ["--user"], ["--system"]):
            proc = self.run_cgrun(["-m", "scope"] + extra + ["--", SH, "-c",
                                                             "touch " + self.path("started")])
            self.assertEqual(proc.returncode, 125, extra)
            lines = self.stderr_lines(proc)
            self.assertEqual(len(lines), 1, lines)
            self.assertTrue(lines[0].startswith("cgrun: "))
            self.assertFalse(os.path.exists(self.path("started")))

    def test_verbose_says_what_was_chosen_and_why(self):
        proc = self.run_cgrun(["-v", "--", SH, "-c", "echo err >&2"])
        self.assertEqual(proc.returncode, 0)
        lines = self.stderr_lines(proc)
        self.assertIn("err", lines)
        ours = [l for l in lines if l.startswith("cgrun: ")]
        self.assertTrue(any(AUTO in l for l in ours), ours)
        if not SYSTEMD:
            self.assertTrue(any(l.startswith("cgrun: not using scope: ") for l in ours), ours)
        if DELEGATED:
            self.assertTrue(any("first choice of auto: " in l and "is delegated" in l for l in ours), ours)
        proc = self.run_cgrun(["-v", "-m", "pgroup", "-t", "0.2", "sleep", "5"])
        self.assertEqual(proc.returncode, 124)
        self.assertIn("pgroup", proc.stderr.decode())
        self.assertIn("timed out", proc.stderr.decode())

    def test_user_and_system_bus(self):
        if SYSTEMD:
            proc, r = self.run_json(["--system", "true"])
            self.assertEqual(proc.returncode, 0)
            self.assertEqual(r["method"], "scope")
        else:
            self.assert_rejected(["--system"] + self.command())
        # No user manager runs for root here or in the test systemd: --user then fails
        # although the system manager may be there (it never falls back: issue 9).
        if os.path.exists(f"/run/user/{os.getuid()}/bus"):
            proc, r = self.run_json(["--user", "true"])
            self.assertEqual(proc.returncode, 0)
            self.assertEqual(r["method"], "scope")
        else:
            self.assert_rejected(["--user"] + self.command(), needle="user")

    def test_unit_name(self):
        for suffix in ("", ".scope"):
            name = f"cgrun-cli-test-{os.getpid()}-{len(suffix)}"
            if not SYSTEMD:
                self.assert_rejected(["--unit", name + suffix] + self.command())
                continue
            proc, r = self.run_json(["--unit", name + suffix, "true"])
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertEqual(r["unit"], name + ".scope")

    def test_slice(self):
        if not SYSTEMD:
            self.assert_rejected(["--slice", "cgrun-cli-test.slice"] + self.command())
            return
        proc, r = self.run_json(["--slice", "cgrun-cli-test.slice", "true"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("/cgrun-cli-test.slice/", r["cgroup"])

    def test_cgroup_parent(self):
        parent = f"/cgrun-cli-test-{os.getpid()}"
        os.mkdir(os.path.join(cgroup2_mount(), parent.lstrip("/")))
        self.cgroups_to_remove.append(parent)
        proc, r = self.run_json(["-m", "cgroup", "--cgroup-parent", parent, "--", SH, "-c",
                                 "cat /proc/self/cgroup"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertTrue(r["cgroup"].startswith(parent + "/"), r["cgroup"])
        self.assertIn("0::" + r["cgroup"], proc.stdout.decode().splitlines())
        parent_dir = os.path.join(cgroup2_mount(), parent.lstrip("/"))
        left = [e.name for e in os.scandir(parent_dir) if e.is_dir()]
        self.assertEqual(left, [], "the child cgroup was left behind")

    def test_missing_cgroup_parent_fails(self):
        proc = self.run_cgrun(["-m", "cgroup", "--cgroup-parent", "/cgrun-cli-no-such-parent",
                               "--", SH, "-c", "touch " + self.path("started")])
        self.assertEqual(proc.returncode, 125)
        self.assertFalse(os.path.exists(self.path("started")))


class NoSilentWeakening(CgrunTestCase):
    """Options of one method imply it; auto ending at a process group says so (issue 9)."""

    def test_scope_options_imply_scope(self):
        unit = f"cgrun-cli-implied-{os.getpid()}"
        for extra in (["--system"], ["--unit", unit], ["--slice", "cgrun-cli-test.slice"],
                      ["-m", "auto", "--system"]):
            if SYSTEMD:
                proc, r = self.run_json(extra + ["true"])
                self.assertEqual(proc.returncode, 0, f"{extra}: {proc.stderr!r}")
                self.assertEqual(r["method"], "scope", extra)
            else:
                # The host: no systemd, auto would have run it in a cgroup.
                self.assert_rejected(extra + self.command())

    def test_cgroup_parent_implies_cgroup(self):
        parent = f"/cgrun-cli-implied-{os.getpid()}"
        os.mkdir(os.path.join(cgroup2_mount(), parent.lstrip("/")))
        self.cgroups_to_remove.append(parent)
        # Under systemd auto would take a scope and ignore the parent.
        proc, r = self.run_json(["--cgroup-parent", parent, "true"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(r["method"], "cgroup")
        self.assertEqual(r["fallbacks"], [])
        self.assertTrue(r["cgroup"].startswith(parent + "/"), r["cgroup"])

    def test_missing_cgroup_parent_starts_nothing(self):
        # Used to run under pgroup, exit 0, and say nothing.
        self.assert_rejected(["--cgroup-parent", "/cgrun-cli-no-such-parent"] + self.command(),
                             needle="cgrun-cli-no-such-parent")
        self.assertFalse(os.path.isdir(os.path.join(cgroup2_mount(), "cgrun-cli-no-such-parent")),
                         "cgrun created the parent")

    def test_conflicting_method_is_a_usage_error(self):
        for args in (["-m", "cgroup", "--unit", "x"], ["-m", "pgroup", "--system"],
                     ["--user", "-m", "cgroup"], ["-m", "pgroup", "--slice", "s.slice"],
                     ["-m", "scope", "--cgroup-parent", "/"], ["-m", "pgroup", "--cgroup-parent", "/"],
                     ["--unit", "x", "--cgroup-parent", "/"]):
            self.assert_rejected(args + self.command(), needle="method")

    def as_nobody(self, args):
        """Runs a copy of cgrun as uid/gid 65534 (no writable cgroup, no user manager)."""
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            self.skipTest("no setpriv to drop to an unprivileged user")
        # The checkout may sit where others cannot enter: run a copy from a readable place.
        where = tempfile.mkdtemp(prefix="cgrun-cli-nobody-")
        self.addCleanup(shutil.rmtree, where, True)
        os.chmod(where, 0o755)
        binary = os.path.join(where, "cgrun")
        shutil.copy2(CGRUN, binary)
        env = {k: v for k, v in self.env.items()
               if k not in ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")}
        return subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                               binary] + args, capture_output=True, env=env, timeout=30, cwd="/")

    def test_auto_at_pgroup_warns_once(self):
        probe = self.as_nobody(["--json", "-", "true"])
        if probe.returncode != 0:
            self.skipTest(f"cgrun does not run as uid 65534 here: {probe.stderr!r}")
        method = parse_report(probe.stdout)["method"]
        if method != "pgroup":
            self.skipTest(f"auto finds {method} for uid 65534 here, not pgroup")
        proc = self.as_nobody(["true"])
        self.assertEqual(proc.returncode, 0)
        lines = self.stderr_lines(proc)
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("cgrun: warning: "), lines)
        self.assertIn("setsid", lines[0])
        # -q silences it; so does asking for pgroup.
        for quiet in (["-q"], ["--quiet"], ["-m", "pgroup"]):
            proc = self.as_nobody(quiet + ["true"])
            self.assertEqual(proc.returncode, 0, quiet)
            self.assertEqual(proc.stderr, b"", quiet)
        # -v says it in its own words, once.
        proc = self.as_nobody(["-v", "true"])
        self.assertEqual(sum("setsid" in l for l in self.stderr_lines(proc)), 1, proc.stderr)

    def test_auto_with_a_cgroup_does_not_warn(self):
        proc = self.run_cgrun(["true"])
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(proc.stderr, b"")


class Limits(CgrunTestCase):
    CONTROLLER = {"MemoryMax": ("memory", "64M"), "TasksMax": ("pids", "32"),
                  "CPUQuota": ("cpu", "50%"),
                  # systemd's value syntax, and the properties beyond the first three
                  "MemoryMax=1.5G": ("memory", None), "MemoryMax=50%": ("memory", None),
                  "MemoryHigh": ("memory", "1G"), "MemoryLow": ("memory", "1M"),
                  "MemoryMin": ("memory", "1M"), "MemorySwapMax": ("memory", "0"),
                  "TasksMax=10%": ("pids", None), "CPUQuota=0.5%": ("cpu", None),
                  "CPUWeight": ("cpu", "50"), "IOWeight": ("io", "50"),
                  "AllowedCPUs": ("cpuset", "0")}

    def test_limits_need_their_controller(self):
        have = root_controllers()
        for prop, (controller, value) in self.CONTROLLER.items():
            given = prop if value is None else f"{prop}={value}"
            proc = self.run_cgrun(["-p", given, "--", SH, "-c",
                                   "touch " + self.path("started")])
            if controller in have:
                self.assertEqual(proc.returncode, 0, f"{given}: {proc.stderr!r}")
            else:
                self.assertEqual(proc.returncode, 125, given)
                lines = self.stderr_lines(proc)
                self.assertEqual(len(lines), 1, lines)
                # The error names what was typed and the controller, never a D-Bus name.
                self.assertIn(f"the {controller} controller", lines[0])
                self.assertIn(given, lines[0])
                self.assertNotIn("USec", lines[0])
                self.assertFalse(os.path.exists(self.path("started")), given)

    def test_bad_values_are_rejected_with_what_was_typed(self):
        for given in ("MemoryMax=1.5X", "MemoryMax=0", "CPUQuota=0.001%", "CPUQuota=abc",
                      "TasksMax=150%", "CPUWeight=0", "IOWeight=10001", "AllowedCPUs=3-1"):
            proc = self.run_cgrun(["-p", given, "--", SH, "-c", "touch " + self.path("started")])
            self.assertEqual(proc.returncode, 125, given)
            self.assertIn(given, proc.stderr.decode())
            self.assertNotIn("USec", proc.stderr.decode())
            self.assertFalse(os.path.exists(self.path("started")), given)

    def test_help_lists_every_property(self):
        out = self.run_cgrun(["--help"]).stdout.decode()
        for name in ("MemoryMax", "MemoryHigh", "MemoryLow", "MemoryMin", "MemorySwapMax",
                     "TasksMax", "CPUQuota", "CPUWeight", "IOWeight", "AllowedCPUs"):
            self.assertIn(name + "=", out)

    def test_memory_max_here(self):
        if "memory" in root_controllers():
            self.skipTest("the memory controller is available here")
        proc = self.run_cgrun(["-p", "MemoryMax=10M", "true"])
        self.assertEqual(proc.returncode, 125)
        self.assertIn("memory", proc.stderr.decode())


class CpuTime(CgrunTestCase):
    """--cpu-time: the tree's total CPU time is bounded; used up, it is stopped with 124."""

    BUSY = "setsid sh -c 'while :; do :; done' & setsid sh -c 'while :; do :; done' & wait"

    def test_used_up_exits_124(self):
        start = time.monotonic()
        proc = self.run_cgrun(["--cpu-time", "300ms", "--json", self.path("r.json"), "--",
                               SH, "-c", self.BUSY])
        self.assertEqual(proc.returncode, 124, proc.stderr)
        self.assertLess(time.monotonic() - start, 10)
        with open(self.path("r.json")) as f:
            report = json.load(f)
        self.assertFalse(report["timed_out"])
        self.assertGreaterEqual(report["cpu_user_ms"] + report["cpu_system_ms"], 300)
        self.assertEqual(report["remaining_processes"], 0)

    def test_preserve_status(self):
        proc = self.run_cgrun(["--cpu-time", "100ms", "--preserve-status", "--", SH, "-c", self.BUSY])
        self.assertEqual(proc.returncode, 128 + signal.SIGKILL, proc.stderr)

    def test_under_the_limit_keeps_the_status(self):
        proc = self.run_cgrun(["--cpu-time", "5s", "--", SH, "-c", "exit 3"])
        self.assertEqual(proc.returncode, 3, proc.stderr)
        proc = self.run_cgrun(["--cpu-time", "0", "--", SH, "-c", "exit 4"])  # 0: no limit
        self.assertEqual(proc.returncode, 4, proc.stderr)

    def test_verbose_says_why(self):
        proc = self.run_cgrun(["-v", "--cpu-time", "100ms", "--", SH, "-c", self.BUSY])
        self.assertEqual(proc.returncode, 124)
        self.assertIn("used up the CPU time of", proc.stderr.decode())

    def test_without_a_cgroup_it_is_refused(self):
        for m in ("pgroup", "subreaper"):
            self.assert_rejected(["-m", m, "--cpu-time", "1s", "--", SH, "-c",
                                  "touch " + self.path("started")], needle="CPU-time limit")
            self.assertFalse(os.path.exists(self.path("started")))

    def test_bad_durations(self):
        self.assert_rejected(["--cpu-time", "abc", "true"], needle="time interval")


class Terminal(CgrunTestCase):
    """cgrun in the foreground of a terminal hands it to the command, as a shell does."""

    def spawn_in_pty(self, argv, env=None):
        try:
            pid, fd = pty.fork()
        except OSError as e:
            self.skipTest(f"no pseudo-terminal: {e}")
        if pid == 0:
            try:
                os.chdir(self.tmp)
                os.execve(argv[0], argv, env or self.env)
            finally:
                os._exit(127)
        return pid, fd

    @staticmethod
    def read_until(fd, needle, timeout=5.0):
        out = b""
        deadline = time.monotonic() + timeout
        while needle not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                out += data
        return out

    def finish(self, pid, fd):
        out = self.read_until(fd, b"\0never", timeout=0.2)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        return out, os.waitstatus_to_exitcode(status)

    def test_command_reads_the_terminal(self):
        pid, fd = self.spawn_in_pty([CGRUN, "-t", "10", SH, "-c", "read x; echo got:$x"])
        time.sleep(0.2)
        os.write(fd, b"hello\n")
        out = self.read_until(fd, b"got:hello")
        rest, rc = self.finish(pid, fd)
        self.assertIn(b"got:hello", out + rest)
        self.assertEqual(rc, 0)

    def test_ctrl_c_reaches_the_command(self):
        pid, fd = self.spawn_in_pty([CGRUN, "-t", "10", SH, "-c",
                                     f"echo $$ > {self.path('main')}.tmp && mv {self.path('main')}.tmp {self.path('main')}; "
                                     f"sleep 10; echo survived"])
        main_pid = self.wait_pid_file("main")
        main = self.watch("main")
        # Type ^C once `sleep` runs: a SIGINT that lands while dash forks it reaches the new
        # child before it resets dash's handler, and `sleep` then ignores it (a dash race,
        # seen under load, not one of cgrun's).
        deadline = time.monotonic() + 10
        while not self.has_child(main_pid, "sleep") and time.monotonic() < deadline:
            time.sleep(0.01)
        os.write(fd, b"\x03")
        out, rc = self.finish(pid, fd)
        self.assertEqual(rc, 130, out)
        self.assertNotIn(b"survived", out)
        self.assert_dead(main, "the command")

    def test_job_control_of_a_shell(self):
        bash = shutil.which("bash")
        if bash is None:
            self.skipTest("no bash")
        env = dict(self.env, PS1="$ ", TERM="dumb")
        pid, fd = self.spawn_in_pty([bash, "--norc", "--noprofile", "-i"], env)
        try:
            self.read_until(fd, b"$ ")
            os.write(fd, f"{CGRUN} -t 20 {SH} -c 'read x; echo got:$x'\n".encode())
            time.sleep(0.3)
            os.write(fd, b"\x1a")
            self.assertIn(b"Stopped", self.read_until(fd, b"Stopped"))
            os.write(fd, b"fg\n")
            time.sleep(0.3)
            os.write(fd, b"hello\n")
            self.assertIn(b"got:hello", self.read_until(fd, b"got:hello"))
            os.write(fd, b"echo rc=$?\n")
            self.assertIn(b"rc=0", self.read_until(fd, b"rc=0"))
            os.write(fd, b"exit\n")
            _, rc = self.finish(pid, fd)
            self.assertEqual(rc, 0)
        finally:
            for cleanup in (lambda: os.kill(pid, signal.SIGKILL), lambda: os.waitpid(pid, 0),
                            lambda: os.close(fd)):
                try:
                    cleanup()
                except OSError:
                    pass


class Completion(unittest.TestCase):
    """tools/cgrun.bash-completion, without the bash-completion package."""

    SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                          "cgrun.bash-completion")

    def complete(self, *words):
        """COMPREPLY for the command line `words` (the last one is being completed)."""
        bash = shutil.which("bash")
        if bash is None:
            self.skipTest("no bash")
        proc = subprocess.run([bash, "--norc", "-c",
                               'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
                               '_cgrun; printf "%s\\n" "${COMPREPLY[@]}"', "bash", self.SCRIPT,
                               "cgrun", *words], capture_output=True, timeout=10)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc.stdout.decode().split()

    def test_options_and_values(self):
        self.assertEqual(self.complete("--pre"), ["--preserve-status"])
        self.assertEqual(self.complete("--q"), ["--quiet"])
        self.assertEqual(self.complete("-m", ""), ["auto", "scope", "cgroup", "pgroup"])
        self.assertEqual(self.complete("--method", "=", "sc"), ["scope"])
        self.assertIn("INT", self.complete("-s", "IN"))
        self.assertEqual(self.complete("-p", "Tas"), ["TasksMax="])
        self.assertEqual(self.complete("-t", ""), [])

    def test_command_after_options_or_a_duration(self):
        for words in (["sh"], ["-t", "5", "sh"], ["10", "sh"], ["--", "sh"], ["-v", "1.5m", "sh"]):
            self.assertIn("sh", self.complete(*words), words)
        # Options of COMMAND are not cgrun's.
        self.assertNotIn("--preserve-status", self.complete("10", "sh", "--pre"))


class Check(CgrunTestCase):
    def test_check_proves_containment(self):
        proc = self.run_cgrun(["--check"], timeout=60)
        out = proc.stdout.decode()
        self.assertEqual(proc.returncode, 0, out + proc.stderr.decode())
        self.assertRegex(out, re.compile(rf"^contains {AUTO} +ok\b", re.M))
        self.assertIn("cgroup2 mount", out)
        self.assertIn("systemd manager", out)

    def test_check_json(self):
        report = self.path("check.json")
        proc = self.run_cgrun(["--check", "--json", report], timeout=60)
        self.assertEqual(proc.returncode, 0)
        with open(report) as f:
            doc = load_report(f, "check")
        self.assertEqual(doc["version"], 1)
        self.assertEqual(doc["kind"], "check")
        self.assertTrue(doc["ok"])
        self.assertEqual(doc["host"]["cgroup2_mount"], cgroup2_mount())
        self.assertEqual(doc["host"]["systemd_reachable"], SYSTEMD)
        self.assertEqual(doc["host"]["delegated"], DELEGATED)
        self.assertEqual(doc["host"]["delegation_marker"] is not None, DELEGATED)
        proofs = {p["method"]: p for p in doc["proofs"]}
        self.assertTrue(proofs[AUTO]["ok"])
        self.assertTrue(proofs[AUTO]["report"]["timed_out"])
        self.assertEqual(proofs[AUTO]["report"]["kind"], "run")
        self.assertGreater(proofs[AUTO]["escapee_pid"], 0)

    def test_check_one_method(self):
        proc = self.run_cgrun(["--check", "-m", "cgroup", "--json", "-"], timeout=60)
        self.assertEqual(proc.returncode, 0)
        doc = parse_report(proc.stdout, "check")
        self.assertEqual([p["method"] for p in doc["proofs"]], ["cgroup"])
        self.assertIn("contains cgroup", proc.stderr.decode())


class Subreaper(CgrunTestCase):
    """The reaper-process method, for where no cgroup can be had: escapees die all the same."""

    def double_fork(self, name):
        """Shell text starting a double-forked setsid daemon that writes its pid to `name`."""
        f = self.path(name)
        return (f"(setsid sh -c 'echo $$ > {f}.tmp && mv {f}.tmp {f} && exec sleep 60' "
                f"</dev/null >/dev/null 2>&1 &); "
                f"while [ ! -e {f} ]; do sleep 0.01; done; ")

    def run_as(self, prefix, args):
        report = self.path("report.json")
        if os.path.exists(report):
            os.unlink(report)
        proc = subprocess.run(prefix + ["--json", report] + args, capture_output=True,
                              env=self.env, timeout=30, cwd=self.tmp)
        with open(report) as f:
            return proc, load_report(f)

    def check_escapees_die(self, prefix, args):
        """At the timeout, and when the main process exits by itself."""
        for name in ("esc", "dbl", "esc2", "dbl2"):
            if os.path.exists(self.path(name)):
                os.unlink(self.path(name))
        proc, r = self.run_as(prefix, args + ["-t", "0.5", "--", SH, "-c", self.escapee("esc") +
                                               self.double_fork("dbl") + "exec sleep 60"])
        esc, dbl = self.watch("esc"), self.watch("dbl")
        self.assertEqual(proc.returncode, 124, proc.stderr)
        self.assertEqual(r["method"], "subreaper")
        self.assertTrue(r["timed_out"])
        self.assertEqual(r["signal"], "KILL")
        self.assertEqual(r["kill"]["mechanism"], "subreaper")
        self.assertEqual(r["remaining_processes"], 0)
        self.assertIsNone(r["error"])
        self.assert_dead(esc, "the setsid escapee at the timeout")
        self.assert_dead(dbl, "the double-forked daemon at the timeout")

        proc, r = self.run_as(prefix, args + ["--", SH, "-c", self.escapee("esc2") +
                                               self.double_fork("dbl2") + "exit 3"])
        esc, dbl = self.watch("esc2"), self.watch("dbl2")
        self.assertEqual(proc.returncode, 3, proc.stderr)
        self.assertEqual(r["method"], "subreaper")
        self.assertEqual(r["exit_code"], 3)
        self.assertFalse(r["timed_out"])
        self.assertEqual(r["kill"]["mechanism"], "subreaper")
        self.assertEqual(r["remaining_processes"], 0)
        self.assertIsNone(r["error"])
        self.assert_dead(esc, "the setsid escapee after the main process exited")
        self.assert_dead(dbl, "the double-forked daemon after the main process exited")
        return r

    def test_explicit_subreaper_kills_escapees(self):
        self.check_escapees_die([CGRUN], ["-m", "subreaper"])

    def test_signals_of_the_main_process_are_reported(self):
        proc, r = self.run_json(["-m", "subreaper", "--", SH, "-c", "kill -USR1 $$"])
        self.assertEqual(proc.returncode, 128 + signal.SIGUSR1)
        self.assertEqual(r["signal"], "USR1")
        self.assertIsNone(r["exit_code"])
        self.assertIsNone(r["kill"])

    def test_non_root_without_cgroup_or_user_manager_lands_on_subreaper(self):
        # As an unprivileged user with no user manager: no scope (no bus), no cgroup (the own
        # cgroup is root's), so auto ends at the reaper process, and escapees still die.
        import pwd
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            self.skipTest("setpriv is not installed")
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user nobody")
        os.chmod(self.tmp, 0o777)
        self.env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        self.env.pop("XDG_RUNTIME_DIR", None)
        self.env["HOME"] = "/nonexistent"
        prefix = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                  CGRUN]
        proc, r = self.run_as(prefix, ["-m", "auto", "true"])
        if r["method"] in ("scope", "cgroup"):
            self.skipTest(f"nobody can have a {r['method']} here")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(r["method"], "subreaper")
        self.assertEqual([f["method"] for f in r["fallbacks"]], ["scope", "cgroup"])
        self.check_escapees_die(prefix, ["-m", "auto"])


class RunOptions(CgrunTestCase):
    """The options systemd-run users reach for: -E, -d, --uid, --gid, --nice, --description."""

    def nobody(self):
        import pwd
        try:
            return pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user nobody")

    def out(self, args):
        proc = self.run_cgrun(args)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc.stdout.decode()

    def test_setenv_sets_and_overrides(self):
        self.env["CGRUN_FOO"] = "orig"
        self.assertEqual(self.out(["-E", "CGRUN_FOO=bar", "-E", "CGRUN_NEW=a=b", "--", SH, "-c",
                                   'printf "%s|%s|%s" "$CGRUN_FOO" "$CGRUN_NEW" "$CGRUN_CLI_TEST"']),
                         f"bar|a=b|{self.tmp}")
        # The last one wins, and only one entry is left.
        self.assertEqual(self.out(["-E", "CGRUN_FOO=1", "--setenv=CGRUN_FOO=2", "--", "env"])
                         .splitlines().count("CGRUN_FOO=2"), 1)
        self.assertNotIn("CGRUN_FOO=", self.out(["-E", "CGRUN_FOO=1", "-E", "CGRUN_FOO=2", "--", "env"])
                         .replace("CGRUN_FOO=2", ""))

    def test_setenv_name_alone_takes_cgruns_value(self):
        self.env["CGRUN_PASS"] = "from cgrun"
        self.env.pop("CGRUN_UNSET", None)
        self.assertEqual(self.out(["-E", "CGRUN_PASS", "-E", "CGRUN_UNSET", "--", SH, "-c",
                                   'printf "%s|%s" "$CGRUN_PASS" "${CGRUN_UNSET+set}"']),
                         "from cgrun|set")

    def test_working_directory(self):
        d = self.path("x")
        os.mkdir(d)
        self.assertEqual(self.out(["-d", d, "--", "pwd"]).strip(), d)
        self.assertEqual(self.out(["--working-directory", d, "--", SH, "-c", "pwd -P"]).strip(),
                         os.path.realpath(d))

    def test_working_directory_that_cannot_be_entered_fails_like_exec(self):
        missing = self.path("missing")
        self.assert_rejected(["-d", missing] + self.command(), needle=missing)
        proc, r = self.run_json(["-d", missing, "--", "true"])
        self.assertEqual(proc.returncode, 125)
        self.assertIn("chdir " + missing, r["error"])
        # Entered with the user's rights: nobody may not enter a directory only root may.
        self.nobody()
        private = self.path("private")
        os.mkdir(private, 0o700)
        os.chmod(self.tmp, 0o755)
        self.assert_rejected(["--uid", "nobody", "-d", private] + self.command(), needle="chdir")

    def test_uid_gets_the_users_ids_and_groups(self):
        nobody = self.nobody()
        os.chmod(self.tmp, 0o777)
        out = self.out(["--uid", "nobody", "--", SH, "-c",
                        'id -u; id -g; id -G; echo "$HOME|$USER|$LOGNAME"; '
                        'grep -E "^(Uid|Gid|Groups):" /proc/self/status'])
        lines = out.splitlines()
        self.assertEqual(int(lines[0]), nobody.pw_uid)
        self.assertEqual(int(lines[1]), nobody.pw_gid)
        self.assertEqual(sorted(int(g) for g in lines[2].split()),
                         sorted(set(os.getgrouplist("nobody", nobody.pw_gid))))
        self.assertEqual(lines[3], f"{nobody.pw_dir}|nobody|nobody")
        # Real, effective, saved and filesystem ids all changed, and no group of root is left.
        self.assertEqual(lines[4].split()[1:], [str(nobody.pw_uid)] * 4)
        self.assertEqual(lines[5].split()[1:], [str(nobody.pw_gid)] * 4)
        self.assertEqual(sorted(int(g) for g in lines[6].split()[1:]),
                         sorted(set(os.getgrouplist("nobody", nobody.pw_gid))))
        # By number too, and with another group: the user's groups with that one.
        out = self.out(["--uid", str(nobody.pw_uid), "--gid", "0", "--", SH, "-c", "id -u; id -g; id -G"])
        lines = out.splitlines()
        self.assertEqual(int(lines[0]), nobody.pw_uid)
        self.assertEqual(int(lines[1]), 0)
        self.assertEqual(sorted(int(g) for g in lines[2].split()),
                         sorted(set(os.getgrouplist("nobody", 0))))

    def test_uid_without_passwd_entry_needs_a_gid(self):
        import pwd
        uid = 4242424
        try:
            pwd.getpwuid(uid)
            self.skipTest(f"uid {uid} exists here")
        except KeyError:
            pass
        self.assert_rejected(["--uid", str(uid)] + self.command(), needle="no passwd entry")
        os.chmod(self.tmp, 0o777)
        self.assertEqual(self.out(["--uid", str(uid), "--gid", "4242", "--", SH, "-c", "id -u; id -g; id -G"])
                         .split(), [str(uid), "4242", "4242"])
        # A group alone: no user to take groups from, and none of root's is kept.
        self.assertEqual(self.out(["--gid", "4242", "--", SH, "-c", "id -u; id -g; id -G"]).split(),
                         ["0", "4242", "4242"])

    def test_unknown_user_or_group_is_rejected(self):
        self.assert_rejected(["--uid", "no-such-user-cgrun"] + self.command(), needle="no-such-user-cgrun")
        self.assert_rejected(["--gid", "no-such-group-cgrun"] + self.command(), needle="no-such-group-cgrun")

    def test_non_root_cannot_ask_for_another_uid(self):
        nobody = self.nobody()
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            self.skipTest("setpriv is not installed")
        os.chmod(self.tmp, 0o777)
        prefix = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", CGRUN]
        for ask in (["--uid", "root"], ["--gid", "0"], ["--uid", "nobody", "--gid", "0"]):
            proc = subprocess.run(prefix + ask + self.command(), capture_output=True, env=self.env,
                                  timeout=30, cwd=self.tmp)
            lines = proc.stderr.decode().splitlines()
            self.assertEqual(proc.returncode, 125, f"{ask}: {lines}")
            self.assertEqual(len(lines), 1, lines)
            self.assertIn("needs root", lines[0])
            self.assertFalse(os.path.exists(self.path("started")), f"{ask} started the command")
        # Asking for what it already is changes nothing and is fine.
        proc = subprocess.run(prefix + ["--uid", "nobody", "-m", "pgroup", "-q", "--", "id", "-u"],
                              capture_output=True, env=self.env, timeout=30, cwd=self.tmp)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(int(proc.stdout), nobody.pw_uid)

    def test_setsid_escapee_of_a_uid_switched_command_dies(self):
        nobody = self.nobody()
        os.chmod(self.tmp, 0o777)
        for method in ([], ["-m", "subreaper"]):
            name = "esc" + "".join(method)
            proc = self.start_cgrun(method + ["--uid", "nobody", "-t", "1", "--", SH, "-c",
                                              self.escapee(name) + "exec sleep 60"])
            esc = self.watch(name)
            self.assertIsNotNone(esc, "the escapee died early")
            with open(f"/proc/{self.wait_pid_file(name)}/status") as f:
                uid = [l.split()[1] for l in f if l.startswith("Uid:")][0]
            self.assertEqual(int(uid), nobody.pw_uid, "the escapee does not run as nobody")
            self.assertEqual(proc.wait(30), 124, self.background_stderr())
            self.assert_dead(esc, f"the setsid escapee of the nobody command {method}")

    def nice_of(self, args):
        stat = self.out(args + ["--", "cat", "/proc/self/stat"])
        return int(stat.rsplit(")", 1)[1].split()[16])  # field 19

    def test_nice(self):
        self.assertEqual(self.nice_of(["--nice", "7"]), 7)
        self.assertEqual(self.nice_of(["--nice=-5"]), -5)  # root may raise the priority
        self.assertEqual(self.nice_of([]), os.getpriority(os.PRIO_PROCESS, 0))
        # Set before the identity changes: nobody could not have lowered it.
        self.nobody()
        os.chmod(self.tmp, 0o777)
        self.assertEqual(self.nice_of(["--nice=-3", "--uid", "nobody"]), -3)

    def test_description_is_the_scopes(self):
        if AUTO != "scope":
            self.skipTest("no systemd manager here: the scope method is needed")
        unit = f"cgrun-desc-test-{os.getpid()}.scope"
        show = ["--", "systemctl", "show", "-p", "Description", "--value", unit]
        self.assertEqual(self.out(["--unit", unit, "--description", "cgrun test: my job"] + show).strip(),
                         "cgrun test: my job")
        # Without it, the default names the command.
        self.assertIn("systemctl", self.out(["--unit", unit] + show))

    def test_description_is_ignored_without_a_unit(self):
        self.assertEqual(self.out(["-m", "cgroup", "--description", "nothing to describe", "--", "echo", "ran"]),
                         "ran\n")


def main():
    global CGRUN, AUTO, SYSTEMD, DELEGATED
    if len(sys.argv) < 3 or sys.argv[2] not in ("cgroup", "scope", "delegated"):
        print("usage: cli_test.py CGRUN_BINARY cgroup|scope|delegated [unittest args...]", file=sys.stderr)
        return 2
    CGRUN, here = os.path.abspath(sys.argv[1]), sys.argv[2]
    AUTO = "cgroup" if here == "delegated" else here
    SYSTEMD, DELEGATED = here != "cgroup", here == "delegated"
    if not (os.path.isfile(CGRUN) and os.access(CGRUN, os.X_OK)):
        print(f"SKIP: no cgrun binary at {CGRUN}", file=sys.stderr)
        return SKIP
    if os.geteuid() != 0:
        print("SKIP: the CLI tests need root (cgroups)", file=sys.stderr)
        return SKIP
    if cgroup2_mount() is None:
        print("SKIP: no cgroup2 mount", file=sys.stderr)
        return SKIP
    # A stop signal cgrun inherits as ignored is left ignored (nohup); the tests want them.
    for sig in (signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    prog = unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[3:], exit=False)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
