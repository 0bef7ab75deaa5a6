#!/usr/bin/python3
"""Command agent of the cgrun test guest (runs as cgrun-vm-agent.service in the guest).

Talks to tests/vm/host.py over the virtio-serial port named "cgrun.agent". Both directions
carry frames: one type byte, a 4-byte big-endian length, the payload.

  guest -> host  H  hello (JSON), repeated every 0.5 s until the first request arrives
                 O  a chunk of the command's stdout          E  a chunk of its stderr
                 M  a message of the agent (text)
                 X  the command ended: JSON {"status": int, "timed_out": bool}
  host -> guest  R  run a command: JSON {"argv", "cwd", "env", "user", "timeout"}

A command of root runs in a transient scope with Delegate=yes (systemd-run --scope): its
own delegated cgroup, as a unit of a real host would have. With "user", the user is
created if needed (useradd -m), made lingering (its systemd --user manager runs), and the
command runs through `runuser -l` in a logind session of that user. The exit status is the
command's, or 128+N when it died of signal N, or 124 when the timeout killed it.
"""

import glob
import json
import os
import pwd
import select
import shlex
import signal
import struct
import subprocess
import sys
import time

PORT_NAME = "cgrun.agent"
CHUNK = 65536


def find_port(deadline):
    while True:
        for f in glob.glob("/sys/class/virtio-ports/*/name"):
            try:
                with open(f) as fh:
                    if fh.read().strip() == PORT_NAME:
                        dev = "/dev/" + os.path.basename(os.path.dirname(f))
                        if os.path.exists(dev):
                            return dev
            except OSError:
                pass
        if time.monotonic() > deadline:
            sys.exit(f"agent: no virtio-serial port named {PORT_NAME}")
        time.sleep(0.05)


class Port:
    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self.buf = b""
        self.eof = False

    def send(self, kind, payload=b""):
        if isinstance(payload, str):
            payload = payload.encode()
        data = kind.encode() + struct.pack(">I", len(payload)) + payload
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:     # host not connected or not reading yet
                select.select([], [self.fd], [], 1.0)
                continue
            view = view[n:]

    def message(self, text):
        print(text, flush=True)
        self.send("M", text)

    def fill(self):
        """Reads what is there (call when the fd is readable)."""
        try:
            d = os.read(self.fd, CHUNK)
        except BlockingIOError:
            return
        if not d:
            # no host connected: virtio-serial reads return 0; do not spin
            self.eof = True
            time.sleep(0.1)
        else:
            self.eof = False
            self.buf += d

    def frame(self):
        if len(self.buf) < 5:
            return None
        kind = chr(self.buf[0])
        (n,) = struct.unpack(">I", self.buf[1:5])
        if len(self.buf) < 5 + n:
            return None
        payload = self.buf[5 : 5 + n]
        self.buf = self.buf[5 + n :]
        return kind, payload


def run_quiet(argv, timeout=30):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def ensure_user(port, name, deadline):
    """Creates NAME if needed, enables lingering, waits for its manager and bus."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        r = run_quiet(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", name])
        if r.returncode != 0:
            raise RuntimeError(f"useradd {name} failed: {r.stdout.strip()}")
        pw = pwd.getpwnam(name)
    uid = pw.pw_uid
    if not os.path.exists(f"/var/lib/systemd/linger/{name}"):
        r = run_quiet(["loginctl", "enable-linger", name])
        if r.returncode != 0:
            raise RuntimeError(f"loginctl enable-linger {name} failed: {r.stdout.strip()}")
    unit = f"user@{uid}.service"
    bus = f"/run/user/{uid}/bus"
    state = ""
    while time.monotonic() < deadline:
        state = run_quiet(["systemctl", "is-active", unit]).stdout.strip()
        # The manager owns org.freedesktop.systemd1 on its bus a little after the unit is
        # active: wait for the name, or the first `cgrun --user` finds nobody there.
        if state == "active" and os.path.exists(bus):
            probe = run_quiet(["runuser", "-u", name, "--", "env", f"XDG_RUNTIME_DIR=/run/user/{uid}",
                               f"DBUS_SESSION_BUS_ADDRESS=unix:path={bus}", "busctl", "--user", "status",
                               "org.freedesktop.systemd1"])
            if probe.returncode == 0:
                return
        if state == "failed":
            break
        time.sleep(0.1)
    status = run_quiet(["systemctl", "status", "--no-pager", "--lines=20", unit]).stdout
    raise RuntimeError(f"{unit} is not running with a bus at {bus} (state: {state or '?'})\n{status}")


class Runner:
    counter = 0

    def __init__(self, port):
        self.port = port

    def run(self, req):
        argv = req["argv"]
        cwd = req.get("cwd") or "/"
        env_in = req.get("env") or {}
        user = req.get("user")
        timeout = float(req.get("timeout") or 0)
        start = time.monotonic()
        deadline = start + timeout if timeout > 0 else None
        Runner.counter += 1
        scope = None

        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3")            # see files the host rebuilt since the boot (9p cache=loose)
        except OSError:
            pass

        if user:
            try:
                ensure_user(self.port, user, min(deadline or start + 120, start + 120))
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                self.port.message(f"cannot set up user {user}: {e}")
                return {"status": 1, "timed_out": False}
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env_in.items())
            script = f"cd -- {shlex.quote(cwd)} || exit 1\n"
            if exports:
                script += f"export {exports}\n"
            script += "exec " + " ".join(shlex.quote(a) for a in argv)
            full = ["runuser", "-l", user, "-c", script]
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
            popen_cwd = "/"
        else:
            scope = f"cgrun-vm-cmd-{Runner.counter}.scope"
            full = ["systemd-run", "--scope", "--quiet", "--collect", f"--unit={scope}",
                    "-p", "Delegate=yes", "--"] + argv
            env = {"HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/bash",
                   "LANG": "C.UTF-8", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
            env.update(env_in)
            popen_cwd = cwd

        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                                    cwd=popen_cwd, env=env, start_new_session=True)
        except OSError as e:
            os.close(out_w)
            os.close(err_w)
            os.close(out_r)
            os.close(err_r)
            self.port.message(f"cannot run {full[0]}: {e}")
            return {"status": 127 if isinstance(e, FileNotFoundError) else 126, "timed_out": False}
        os.close(out_w)
        os.close(err_w)
        pidfd = os.pidfd_open(proc.pid)

        streams = {out_r: "O", err_r: "E"}
        timed_out = False
        exited_at = None
        status = None
        while True:
            now = time.monotonic()
            if status is None and deadline is not None and now >= deadline and not timed_out:
                timed_out = True
                self.kill(proc, scope)
            if status is not None and (not streams or now - exited_at > 2.0):
                break
            wait = 0.5
            if deadline is not None and not timed_out:
                wait = max(0.0, min(wait, deadline - now))
            fds = list(streams) + [self.port.fd] + ([pidfd] if status is None else [])
            readable, _, _ = select.select(fds, [], [], wait)
            for fd in readable:
                if fd == self.port.fd:
                    self.port.fill()
                    if self.port.eof and status is None:
                        self.kill(proc, scope)      # the host went away
                    continue
                if fd == pidfd:
                    rc = proc.wait()
                    status = 128 - rc if rc < 0 else rc
                    exited_at = time.monotonic()
                    continue
                data = os.read(fd, CHUNK)
                if data:
                    self.port.send(streams[fd], data)
                else:
                    os.close(fd)
                    del streams[fd]
        for fd in streams:
            os.close(fd)
        os.close(pidfd)
        # whatever the command left behind (a scope outlives its main process)
        self.kill(proc, scope)
        if timed_out:
            self.port.message(f"timeout: the command was killed after {timeout:g} s")
            status = 124
        return {"status": status, "timed_out": timed_out}

    @staticmethod
    def kill(proc, scope):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if scope:
            run_quiet(["systemctl", "kill", "--signal=KILL", scope])


def main():
    port = Port(find_port(time.monotonic() + 30))
    os.set_blocking(port.fd, False)
    runner = Runner(port)
    greeted = False
    last_hello = 0.0
    hello = json.dumps({"uptime": float(open("/proc/uptime").read().split()[0])})
    while True:
        if not greeted and time.monotonic() - last_hello >= 0.5:
            port.send("H", hello)
            last_hello = time.monotonic()
        readable, _, _ = select.select([port.fd], [], [], 0.5)
        if readable:
            port.fill()
        while (f := port.frame()) is not None:
            kind, payload = f
            if kind != "R":
                port.message(f"unknown request type {kind!r}")
                continue
            greeted = True
            try:
                req = json.loads(payload)
                result = runner.run(req)
            except Exception as e:  # report, keep serving
                port.message(f"agent error: {type(e).__name__}: {e}")
                result = {"status": 1, "timed_out": False}
            port.send("X", json.dumps(result))


if __name__ == "__main__":
    main()
