#!/usr/bin/env python3
"""Runs the cgrun command lines of the README's "CI recipes" section, as a reader would copy them.

usage: recipes_test.py README CGRUN_BINARY

Every line of the section's code blocks that runs cgrun (after `run:` or `- `) is run in a
fresh directory with a Makefile whose `check` target passes; the test step is run again with
a `check` that leaves a setsid daemon behind, which must make it exit 123, name the daemon on
stderr and in the JSON report, and kill it. Prints "N passed, N failed"; exit 1 on a failure,
77 (skip) without root.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import report_schema  # noqa: E402  (tests/report_schema.py: every report is checked against doc/)


def recipe_lines(readme):
    text = open(readme).read()
    m = re.search(r"^## CI recipes\n(.*?)^## ", text, re.S | re.M)
    if not m:
        raise SystemExit("no '## CI recipes' section in " + readme)
    lines = []
    for block in re.findall(r"```yaml\n(.*?)```", m.group(1), re.S):
        for line in block.splitlines():
            cmd = re.match(r"\s*(?:-\s+)?(?:run:\s+)?(cgrun\s.*)$", line)
            if cmd:
                lines.append(cmd.group(1))
    return lines


def main():
    if len(sys.argv) != 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    readme, cgrun = sys.argv[1], os.path.abspath(sys.argv[2])
    if os.geteuid() != 0:
        print("SKIP: the recipes run cgrun with cgroups as root", file=sys.stderr)
        return 77
    lines = recipe_lines(readme)
    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print(("ok - " if ok else "FAIL - ") + name + (": " + detail if detail else ""), flush=True)

    check("the section has a --check line and --on-leak=fail test lines",
          any("--check" in l for l in lines) and sum("--on-leak=fail" in l for l in lines) >= 2, repr(lines))
    bindir = tempfile.mkdtemp(prefix="cgrun-recipes-bin-")
    os.symlink(cgrun, os.path.join(bindir, "cgrun"))
    env = dict(os.environ, PATH=bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
    try:
        for line in lines:
            for leak in (False, True):
                if leak and "--on-leak=fail" not in line:
                    continue
                work = tempfile.mkdtemp(prefix="cgrun-recipes-")
                pidfile = os.path.join(work, "daemon.pid")
                body = (f"\tsetsid sh -c 'echo $$$$ > {pidfile}; exec sleep 300' </dev/null >/dev/null 2>&1 &\n"
                        f"\twhile [ ! -s {pidfile} ]; do sleep 0.01; done\n"
                        f"\twhile [ \"$$(cat /proc/$$(cat {pidfile})/comm)\" != sleep ]; do sleep 0.01; done\n"
                        ) if leak else "\t@true\n"
                with open(os.path.join(work, "Makefile"), "w") as f:
                    f.write("check:\n" + body)
                p = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True, timeout=120)
                err = p.stderr.decode(errors="replace")
                name = f"{line!r}" + (" with a leaking make check" if leak else "")
                report_path = os.path.join(work, "cgrun-report.json")
                report = None
                if "--json" in line:
                    problems = ["no report written"]
                    if os.path.exists(report_path):
                        with open(report_path) as f:
                            report = json.load(f)
                        problems = report_schema.problems(report)
                    check(name + ": the report matches doc/report.schema.json", not problems, "; ".join(problems))
                if not leak:
                    check(name, p.returncode == 0, f"exit {p.returncode}, stderr {err.strip()!r}")
                else:
                    pid = int(open(pidfile).read())
                    time.sleep(0.2)
                    alive = os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split(") ")[1][0] != "Z"
                    listed = report is not None and any(
                        l["pid"] == pid and l["command"] == ["sleep", "300"] and l["escaped"]
                        for l in report["leftovers"])
                    check(name, p.returncode == 123 and f"left running: pid {pid} (sleep 300), escaped via setsid"
                          in err and listed and not alive,
                          f"exit {p.returncode}, daemon listed {listed}, alive {alive}, stderr {err.strip()!r}")
                    if alive:
                        os.kill(pid, 9)
                shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(bindir, ignore_errors=True)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
