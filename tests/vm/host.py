#!/usr/bin/python3
"""Host side of tests/with-vm.sh.

  host.py vmlinux VMLINUZ OUT
      Writes the uncompressed ELF kernel of a bzImage with an xz payload (Debian's) to OUT.
      Exit 1 if there is none (the caller then boots VMLINUZ itself).

  host.py run --socket PATH --qemu-pid PID --boot-timeout S --timeout S [--user NAME]
              --cwd DIR -- ARGV...
      Waits for the guest's agent (tests/vm/agent.py) on the virtio-serial socket, runs ARGV
      in the guest and relays its stdout, stderr and exit status. The environment given to
      ARGV: PATH, the sanitizers' *_OPTIONS, MALLOC_PERTURB_, MESON_TEST_ITERATION and every
      CGRUN_* variable of ours. Exit status: ARGV's; 124 when it timed out (the agent killed
      it); 1 when the guest did not come up or went away (a line on stderr says which; the
      file guest-failed is then created beside the socket).
"""

import argparse
import json
import lzma
import os
import select
import socket
import struct
import sys
import time

PROG = "with-vm.sh"
PASSED_ENV = {"PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "MSAN_OPTIONS",
              "TSAN_OPTIONS", "MALLOC_PERTURB_", "MESON_TEST_ITERATION"}


def vmlinux(src, dst):
    data = open(src, "rb").read()
    at = data.find(b"\xfd7zXZ\x00")
    while at >= 0:
        try:
            d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            out = d.decompress(data[at:])
            if out[:4] == b"\x7fELF":
                with open(dst + ".part", "wb") as f:
                    f.write(out)
                os.rename(dst + ".part", dst)
                return 0
        except lzma.LZMAError:
            pass
        at = data.find(b"\xfd7zXZ\x00", at + 1)
    return 1


def err(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def guest_failed(a):
    open(os.path.join(os.path.dirname(a.socket), "guest-failed"), "w").close()
    return 1


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.closed = False

    def fill(self, timeout):
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return
        d = self.sock.recv(1 << 16)
        if not d:
            self.closed = True
        self.buf += d

    def frame(self):
        if len(self.buf) < 5:
            return None
        (n,) = struct.unpack(">I", self.buf[1:5])
        if len(self.buf) < 5 + n:
            return None
        kind, payload = chr(self.buf[0]), self.buf[5 : 5 + n]
        self.buf = self.buf[5 + n :]
        return kind, payload

    def send(self, kind, payload):
        self.sock.sendall(kind.encode() + struct.pack(">I", len(payload)) + payload)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return
        view = view[n:]


def run(a):
    start = time.monotonic()
    boot_deadline = start + a.boot_timeout
    verbose = bool(os.environ.get("CGRUN_VM_VERBOSE")) or os.environ.get("CGRUN_VM_LOG") == "console"

    # 1. connect (QEMU creates the socket at start-up, before the guest runs)
    sock = None
    while sock is None:
        if not alive(a.qemu_pid):
            err("ERROR: QEMU exited while the guest was booting")
            return guest_failed(a)
        if time.monotonic() > boot_deadline:
            err(f"ERROR: no agent socket after {a.boot_timeout:g} s")
            return guest_failed(a)
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(a.socket)
            sock = s
        except OSError:
            s.close()
            time.sleep(0.02)
    conn = Conn(sock)

    # 2. the agent's hello
    hello = None
    while hello is None:
        now = time.monotonic()
        if now > boot_deadline:
            err(f"ERROR: the guest did not boot: its agent did not answer within {a.boot_timeout:g} s")
            return guest_failed(a)
        if not alive(a.qemu_pid):
            err("ERROR: QEMU exited while the guest was booting")
            return guest_failed(a)
        conn.fill(min(0.5, boot_deadline - now))
        if conn.closed:
            err("ERROR: QEMU closed the agent's socket while the guest was booting")
            return guest_failed(a)
        while (f := conn.frame()) is not None:
            if f[0] == "H":
                hello = json.loads(f[1])
            elif f[0] == "M":
                err("guest: " + f[1].decode(errors="replace"))
    if verbose:
        err(f"guest ready after {time.monotonic() - start:.1f} s "
            f"(guest uptime {hello.get('uptime', 0):.1f} s)")

    # 3. the command
    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV or k.startswith("CGRUN_")}
    req = {"argv": a.argv, "cwd": a.cwd, "env": env, "user": a.user or None, "timeout": a.timeout}
    conn.send("R", json.dumps(req).encode())
    sent = time.monotonic()
    # the agent enforces the timeout; this one is for a guest that stopped answering
    deadline = sent + a.timeout + 60 if a.timeout > 0 else None
    while True:
        now = time.monotonic()
        if deadline is not None and now > deadline:
            err(f"ERROR: the guest did not answer within {a.timeout:g} s + 60 s")
            return 124
        conn.fill(1.0 if deadline is None else min(1.0, deadline - now))
        while (f := conn.frame()) is not None:
            kind, payload = f
            if kind == "O":
                write_all(1, payload)
            elif kind == "E":
                write_all(2, payload)
            elif kind == "M":
                err("guest: " + payload.decode(errors="replace"))
            elif kind == "X":
                res = json.loads(payload)
                if verbose:
                    err(f"command ended after {time.monotonic() - sent:.1f} s, status {res['status']}")
                return int(res["status"])
        if conn.closed or not alive(a.qemu_pid):
            err("ERROR: the guest went away while the command ran")
            return guest_failed(a)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "vmlinux":
        return vmlinux(sys.argv[2], sys.argv[3])
    p = argparse.ArgumentParser(prog="host.py run")
    p.add_argument("mode", choices=["run"])
    p.add_argument("--socket", required=True)
    p.add_argument("--qemu-pid", type=int, required=True)
    p.add_argument("--boot-timeout", type=float, required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--user", default="")
    p.add_argument("--cwd", required=True)
    p.add_argument("argv", nargs="+")
    return run(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
