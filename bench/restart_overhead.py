#!/usr/bin/env python3
"""Restart overhead: how long after a supervised program exits its supervisor has exec'd the
next one, beyond any configured delay. Compares Visor (restartsDelaySeconds = 0) with two
classic process supervisors, s6-supervise (Debian package s6) and runsv (package runit),
supervising the very same crashing program.

The program is the core-node simulator behind the same wrapper for all three supervisors:

    #!/bin/sh
    exec zeta-core-sim --sim-version v1 --socket S --record R --crash-after 1500ms start

It exits with status 3 1.5 s after it starts. s6-supervise and runsv never start a service
twice within one second; the program runs longer than that so their throttle does not apply
and only their reaction is measured. From the simulator's record (realtime nanoseconds, each
written by the process itself):

  overhead = next "start" record (first statement of main, after the shell's exec)
           - previous "exit" record (written just before exit(3))

So it covers process teardown, the supervisor noticing (SIGCHLD or its waiter thread),
fork, exec of /bin/sh, sh's exec of the simulator, and the simulator's loader. Visor also
logs, and counts the restart against maxNumberOfRestarts (set high here).

s6-supervise 2.11 (Debian 12) pauses one second after every death, however long the service
ran (strace shows a 1 s ppoll timeout between the reaped ./finish and the next fork), and it
has no setting for that pause. Its rows therefore show the raw gap and, as for Visor's
configured delay, the overhead beyond that fixed pause.

Usage: bench/restart_overhead.py [RESTARTS] (default 30 for each supervisor)
Needs: s6-supervise, s6-svc, runsv and sv in PATH (apt-get install -y s6 runit).
"""
import json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRASH_AFTER_MS = 1500
# The pause each supervisor takes on purpose before a restart, subtracted from the gap.
PAUSE_MS = {"visor": 0, "s6-supervise": 1000, "runsv": 0}


def build():
    subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "visor", "--bin", "zeta-core-sim"],
                   cwd=ROOT, check=True)
    return os.path.join(ROOT, "target/release/visor"), os.path.join(ROOT, "target/release/zeta-core-sim")


def wrapper(sim, work):
    return (f"#!/bin/sh\nexec {sim} --sim-version v1 --socket {work}/core.sock --record {work}/record.jsonl "
            f"--crash-after {CRASH_AFTER_MS}ms start\n")


def write_exec(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


def read(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def measure(name, work, start, stop, restarts):
    """Starts a supervisor, waits for RESTARTS restarts of the program, stops it, and returns
    the overheads in milliseconds."""
    record = os.path.join(work, "record.jsonl")
    log = open(os.path.join(work, "supervisor.log"), "w")
    proc = subprocess.Popen(start, stdout=log, stderr=log, cwd=work)
    deadline = time.time() + (restarts + 5) * (CRASH_AFTER_MS / 1000 + 1.5) + 30
    try:
        while time.time() < deadline:
            starts = [r for r in read(record) if r["event"] == "start"]
            if len(starts) >= restarts + 1:
                break
            if proc.poll() is not None:
                sys.exit(f"{name} exited early; see {work}/supervisor.log")
            time.sleep(0.2)
        else:
            sys.exit(f"{name}: timed out waiting for {restarts} restarts; see {work}")
    finally:
        stop(proc)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for r in read(record):
            if r["event"] == "start":
                try:
                    os.kill(r["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
    records = read(record)
    overheads = []
    last_exit = None
    for r in records:
        if r["event"] == "exit" and r.get("reason") == "crash":
            last_exit = r["t_ns"]
        elif r["event"] == "start" and last_exit is not None:
            overheads.append((r["t_ns"] - last_exit) / 1e6)
            last_exit = None
    return overheads[:restarts]


def visor_case(visor, sim, work):
    home = os.path.join(work, "home")
    os.makedirs(os.path.join(home, "genesis"))
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write("restartsDelaySeconds = 0\nmaxNumberOfRestarts = 100000\n")
    write_exec(os.path.join(home, "genesis", "zeta"), wrapper(sim, work))
    with open(os.path.join(home, "genesis", "run-config.toml"), "w") as f:
        f.write(f'name = "v1"\n[zeta]\n  [zeta.binary]\n    path = "zeta"\n    args = []\n'
                f'  [zeta.rpc]\n    socketPath = "{work}/core.sock"\n    httpPath = "/rpc"\n')
    return [visor, "run", "--home", home], lambda p: p.send_signal(signal.SIGTERM)


def s6_case(sim, work):
    service = os.path.join(work, "service")
    os.makedirs(service)
    write_exec(os.path.join(service, "run"), wrapper(sim, work))
    return (["s6-supervise", service],
            lambda p: subprocess.run(["s6-svc", "-xd", service], check=False))


def runsv_case(sim, work):
    service = os.path.join(work, "service")
    os.makedirs(service)
    write_exec(os.path.join(service, "run"), wrapper(sim, work))

    def stop(p):
        subprocess.run(["sv", "-w", "10", "down", service], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["sv", "exit", service], check=False, stdout=subprocess.DEVNULL)
    return ["runsv", service], stop


def main():
    restarts = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    for tool in ("s6-supervise", "s6-svc", "runsv", "sv"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found; install it with: apt-get install -y s6 runit")
    visor, sim = build()
    results = []
    for name in ("visor", "s6-supervise", "runsv"):
        work = tempfile.mkdtemp(prefix=f"visor-restart-{name}-")
        if name == "visor":
            start, stop = visor_case(visor, sim, work)
        elif name == "s6-supervise":
            start, stop = s6_case(sim, work)
        else:
            start, stop = runsv_case(sim, work)
        overheads = measure(name, work, start, stop, restarts)
        if len(overheads) < restarts:
            sys.exit(f"{name}: only {len(overheads)} restarts recorded; see {work}")
        results.append((name, overheads))
        shutil.rmtree(work)
    print(f"restarts per supervisor: {restarts}; program crashes {CRASH_AFTER_MS} ms after each start; "
          f"Visor restartsDelaySeconds = 0")
    print("| supervisor | built-in or configured pause | n | mean (ms) | median (ms) | p95 (ms) | worst (ms) |")
    print("|---|---|---|---|---|---|---|")
    for name, raw in results:
        pause = PAUSE_MS[name]
        values = [v - pause for v in raw]
        label = "none (restartsDelaySeconds = 0)" if name == "visor" else f"{pause} ms"
        print(f"| {name} (beyond the pause) | {label} | {len(values)} | {statistics.mean(values):.2f} "
              f"| {statistics.median(values):.2f} | {percentile(values, 95):.2f} | {max(values):.2f} |")
        if pause:
            print(f"| {name} (raw gap) | | {len(raw)} | {statistics.mean(raw):.2f} | {statistics.median(raw):.2f} "
                  f"| {percentile(raw, 95):.2f} | {max(raw):.2f} |")


if __name__ == "__main__":
    main()
