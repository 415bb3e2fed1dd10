#!/usr/bin/env python3
"""Idle footprint of Visor beside two classic process supervisors, all supervising the same
idle program at the same time: resident memory, threads, open file descriptors and CPU time,
read from /proc.

Supervisors (each with its own copy of the program):
  - visor (glibc release build, default config: status poll every 500 ms)
  - visor, static musl build (target/x86_64-unknown-linux-musl/release/visor)
  - s6-supervise (Debian package s6)
  - runsv (Debian package runit)

The program is the core-node simulator behind the same wrapper for all:

    #!/bin/sh
    exec zeta-core-sim --sim-version v1 --socket S start

It serves the admin RPC and does nothing else. Visor asks it for the upgrade status every
500 ms (its default), which is work the peers do not do; s6-supervise and runsv only wait
for their child to die.

After a settling time the window starts: CPU time is the sum over the supervisor's threads
of /proc/PID/task/TID/schedstat (nanoseconds on CPU) and, as a cross-check, utime+stime
from /proc/PID/stat (clock ticks), both read at the start and the end of the window. VmRSS,
VmHWM, Threads and the open descriptors are read at the end.

Usage: bench/footprint_peers.py [SECONDS] [--also NAME=BINARY]...   (default 60 s)
  --also NAME=BINARY  one more Visor beside the others, for example the previous release's
                      static build, measured in the same run ("visor (NAME)")
Needs: s6-supervise, s6-svc, runsv, sv; musl-gcc and the
x86_64-unknown-linux-musl Rust target for the static build (skipped with a note otherwise).
"""
import os, re, shutil, signal, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTLE_S = 5


def build():
    subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "visor", "--bin", "zeta-core-sim"],
                   cwd=ROOT, check=True)
    glibc = os.path.join(ROOT, "target/release/visor")
    sim = os.path.join(ROOT, "target/release/zeta-core-sim")
    musl = None
    if shutil.which("musl-gcc"):
        env = dict(os.environ, CC_x86_64_unknown_linux_musl="musl-gcc")
        done = subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "x86_64-unknown-linux-musl",
                               "--bin", "visor"], cwd=ROOT, env=env)
        if done.returncode == 0:
            musl = os.path.join(ROOT, "target/x86_64-unknown-linux-musl/release/visor")
    if musl is None:
        print("note: static musl build skipped (needs musl-gcc: apt-get install -y musl-tools, and "
              "rustup target add x86_64-unknown-linux-musl)")
    return glibc, musl, sim


def write_exec(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


def wrapper(sim, work):
    return f"#!/bin/sh\nexec {sim} --sim-version v1 --socket {work}/core.sock start\n"


class Case:
    def __init__(self, name, binary, work, command, stop):
        self.name, self.binary, self.work, self.command, self.stop = name, binary, work, command, stop
        self.log = open(os.path.join(work, "supervisor.log"), "w")
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=self.log, cwd=work)
        self.pid = self.proc.pid

    def wait_for_program(self):
        deadline = time.time() + 10
        while time.time() < deadline:
            if children(self.pid):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        sys.exit(f"{self.name}: the supervised program did not start; see {self.work}")


def visor_case(name, visor, sim):
    work = tempfile.mkdtemp(prefix="visor-fp-")
    home = os.path.join(work, "home")
    os.makedirs(os.path.join(home, "genesis"))
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write("# defaults\n")
    write_exec(os.path.join(home, "genesis", "zeta"), wrapper(sim, work))
    with open(os.path.join(home, "genesis", "run-config.toml"), "w") as f:
        f.write(f'name = "v1"\n[zeta]\n  [zeta.binary]\n    path = "zeta"\n    args = []\n'
                f'  [zeta.rpc]\n    socketPath = "{work}/core.sock"\n    httpPath = "/rpc"\n')
    return Case(name, visor, work, [visor, "run", "--home", home], lambda c: os.kill(c.pid, signal.SIGTERM))


def service_case(name, binary, sim, command, stop):
    work = tempfile.mkdtemp(prefix=f"visor-fp-{name}-")
    service = os.path.join(work, "service")
    os.makedirs(service)
    write_exec(os.path.join(service, "run"), wrapper(sim, work))
    return Case(name, binary, work, command + [service], lambda c: stop(service))


def children(pid):
    """The supervised program(s): the children of every thread of `pid`."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(p) for p in f.read().split()]
        except FileNotFoundError:
            pass
    return out


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    field = lambda key: int(re.search(rf"^{key}:\s+(\d+)", text, re.M).group(1))
    return field("VmRSS"), field("VmHWM"), field("Threads")


def cpu(pid):
    """(ns on CPU summed over threads, utime+stime ticks)"""
    ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return ns, int(fields[11]) + int(fields[12])


def main():
    args, also = sys.argv[1:], []
    while "--also" in args:
        i = args.index("--also")
        if i + 1 >= len(args) or "=" not in args[i + 1]:
            sys.exit("--also takes NAME=BINARY")
        name, binary = args[i + 1].split("=", 1)
        also.append((name, os.path.abspath(binary)))
        del args[i:i + 2]
    seconds = float(args[0]) if args else 60
    for tool in ("s6-supervise", "s6-svc", "runsv", "sv"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found; install with: apt-get install -y s6 runit")
    glibc, musl, sim = build()
    cases = [visor_case("visor (glibc)", glibc, sim)]
    if musl:
        cases.append(visor_case("visor (static musl)", musl, sim))
    for name, binary in also:
        cases.append(visor_case(f"visor ({name})", binary, sim))
    cases.append(service_case("s6-supervise", shutil.which("s6-supervise"), sim, ["s6-supervise"],
                              lambda d: subprocess.run(["s6-svc", "-xd", d], check=False)))
    cases.append(service_case("runsv", shutil.which("runsv"), sim, ["runsv"],
                              lambda d: (subprocess.run(["sv", "-w", "10", "down", d], check=False,
                                                        stdout=subprocess.DEVNULL),
                                         subprocess.run(["sv", "exit", d], check=False, stdout=subprocess.DEVNULL))))
    rows = []
    try:
        for c in cases:
            c.wait_for_program()
        time.sleep(SETTLE_S)
        before = {c.name: (cpu(c.pid), time.monotonic()) for c in cases}
        time.sleep(seconds)
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        for c in cases:
            (ns0, t0), m0 = before[c.name]
            ns1, t1 = cpu(c.pid)
            elapsed = time.monotonic() - m0
            rss, hwm, threads = proc_status(c.pid)
            fds = len(os.listdir(f"/proc/{c.pid}/fd"))
            rows.append([c.name, os.path.getsize(c.binary), rss, hwm, threads, fds,
                         (ns1 - ns0) / 1e6, 100 * (ns1 - ns0) / 1e9 / elapsed, t1 - t0, ticks_per_s])
    finally:
        programs = [pid for c in cases if c.proc.poll() is None for pid in children(c.pid)]
        for c in cases:
            if c.proc.poll() is None:
                c.stop(c)
        for c in cases:
            try:
                c.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()
        for pid in programs:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    print(f"idle window: {seconds:g} s after {SETTLE_S} s of settling; all {len(cases)} ran at the same time")
    print("| supervisor | binary (bytes) | VmRSS (KiB) | VmHWM (KiB) | threads | open fds "
          "| CPU in window (ms) | CPU (% of one core) | utime+stime (ticks) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]:.1f} | {r[7]:.4f} "
              f"| {r[8]} (1/{r[9]} s) |")
    for c in cases:
        shutil.rmtree(c.work, ignore_errors=True)


if __name__ == "__main__":
    main()
