#!/usr/bin/env python3
"""Upgrade detection latency and dark time, over many upgrades with the simulator.

Builds release binaries, makes a home with folders v0..vN whose `zeta` is a plain symlink to
the simulator (options in a `sim-options` file beside it, so no shell sits between Visor and
the process), and runs `visor run` at its default poll intervals. Each version vK accepts
v(K+1) 300 ms after it starts and becomes ready at a random moment 800-1300 ms after it
starts. From the simulator's record (realtime nanoseconds, written by each process):

  detection = old core's SIGTERM record  - old core's "ready" record
  dark time = new core's "start" record  - old core's "exit" record

"start" is taken as the first statement of the simulator's main, so dark time covers Visor
noticing the exit, switching `current` (symlink + rename + fsync), fork/exec and the
simulator's own exec.

Usage: bench/upgrade_latency.py [UPGRADES] [--variant prepared|auto-install-prefetch]
                               [--before-switch PROGRAM] [--visor BINARY] [--runner COMMAND]
(default 50 upgrades, variant `prepared`: every version folder exists before its upgrade).

With `--variant auto-install-prefetch` the folders v1..vN are not made up front: Visor
fetches each from a loopback stand-in for GitHub (bench/fake_github.py) as soon as the
upgrade is accepted ([autoInstall] enabled, prefetch = true, apiUrl = http://127.0.0.1:PORT).
Each release is a zip of a copy of the simulator plus its `sim-options`, with a SHA-256
digest, so an installed folder is equivalent to a prepared one; the install time (Visor's
"installing" line to its "installed and version checked" line) is reported too.
"""
import argparse, json, os, random, shutil, signal, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build():
    subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "visor", "--bin", "zeta-core-sim"],
                   cwd=ROOT, check=True)
    return (os.path.join(ROOT, "target/release/visor"), os.path.join(ROOT, "target/release/zeta-core-sim"))


def sim_options(work, k, upgrades, rng):
    options = ["--sim-version", f"v{k}", "--socket", f"{work}/core.sock", "--record", f"{work}/record.jsonl"]
    if k < upgrades:
        ready_ms = 800 + rng.randint(0, 500)
        options += ["--announce", f"v{k + 1}@{1000 * (k + 1)}", "--announce-after", "300ms",
                    "--ready-after", f"{ready_ms}ms"]
    return " ".join(options)


def make_version(home, work, sim, k, upgrades, rng):
    folder = os.path.join(home, "genesis" if k == 0 else f"v{k}")
    os.makedirs(folder)
    os.symlink(sim, os.path.join(folder, "zeta"))
    with open(os.path.join(folder, "sim-options"), "w") as f:
        f.write(sim_options(work, k, upgrades, rng) + "\n")
    with open(os.path.join(folder, "run-config.toml"), "w") as f:
        f.write(f'name = "v{k}"\n[zeta]\n  [zeta.binary]\n    path = "zeta"\n'
                f'    args = ["start", "--home", "{work}/node"]\n'
                f'  [zeta.rpc]\n    socketPath = "{work}/core.sock"\n    httpPath = "/rpc"\n')


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(name, values_ms):
    return (f"| {name} | {len(values_ms)} | {statistics.mean(values_ms):.2f} | {statistics.median(values_ms):.2f} "
            f"| {percentile(values_ms, 95):.2f} | {max(values_ms):.2f} |")


def main():
    parser = argparse.ArgumentParser(description="Upgrade detection latency and dark time.")
    parser.add_argument("upgrades", nargs="?", type=int, default=50)
    parser.add_argument("--variant", choices=["prepared", "auto-install-prefetch"], default="prepared")
    parser.add_argument("--before-switch", metavar="PROGRAM",
                        help="run this program as the [hooks] beforeSwitch hook (e.g. /bin/true)")
    parser.add_argument("--visor", metavar="BINARY",
                        help="this visor binary instead of the release build (e.g. the static musl one)")
    parser.add_argument("--runner", metavar="COMMAND",
                        help="run visor through this command, e.g. qemu-aarch64 for an arm64 build "
                             "(emulated: the simulator stays the host's)")
    args = parser.parse_args()
    auto = args.variant == "auto-install-prefetch"
    upgrades = args.upgrades
    visor, sim = build()
    if args.visor:
        visor = os.path.abspath(args.visor)
    work = tempfile.mkdtemp(prefix="visor-bench-")
    home = os.path.join(work, "home")
    os.makedirs(home)
    rng = random.Random(7)
    github = None
    if auto:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from fake_github import FakeGithub, release_zip
        github = FakeGithub()
        sim_binary = open(sim, "rb").read()
        make_version(home, work, sim, 0, upgrades, rng)
        for k in range(1, upgrades + 1):
            github.publish(f"v{k}", release_zip(sim_binary, sim_options(work, k, upgrades, rng)))
        open(os.path.join(home, "config.toml"), "w").write(
            f'[autoInstall]\nenabled = true\nprefetch = true\napiUrl = "{github.url}"\n')
    else:
        open(os.path.join(home, "config.toml"), "w").write("# defaults\n")
        for k in range(upgrades + 1):
            make_version(home, work, sim, k, upgrades, rng)
    if args.before_switch:
        with open(os.path.join(home, "config.toml"), "a") as f:
            f.write(f'[hooks]\nbeforeSwitch = ["{args.before_switch}"]\n')
    record = os.path.join(work, "record.jsonl")
    log = open(os.path.join(work, "visor.log"), "w")
    env = dict(os.environ, NO_PROXY="*")
    proc = subprocess.Popen((args.runner.split() if args.runner else []) + [visor, "run", "--home", home], stderr=log, stdout=log, env=env)
    deadline = time.time() + 5 * upgrades + 30
    try:
        while time.time() < deadline:
            starts = [r for r in read(record) if r["event"] == "start" and r.get("mode") == "core"]
            if any(r["version"] == f"v{upgrades}" for r in starts):
                break
            if proc.poll() is not None:
                sys.exit(f"visor exited early; log in {work}/visor.log")
            time.sleep(0.2)
        else:
            sys.exit(f"timed out; log in {work}/visor.log")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    records = read(record)
    pids = [r["pid"] for r in records if r["event"] == "start" and r.get("mode") == "core"]
    # Records of one process follow its start record; attribute by order of pids.
    per = {pid: {} for pid in pids}
    owner = None
    for r in records:
        if r["event"] == "start" and r.get("mode") == "core":
            owner = r["pid"]
            per[owner]["start"] = r["t_ns"]
        elif owner is not None and r["event"] in ("ready", "signal", "exit") and r["event"] not in per[owner]:
            per[owner][r["event"]] = r["t_ns"]
    detection, dark = [], []
    for old, new in zip(pids, pids[1:]):
        o, n = per[old], per[new]
        if "ready" in o and "signal" in o:
            detection.append((o["signal"] - o["ready"]) / 1e6)
        if "exit" in o:
            dark.append((n["start"] - o["exit"]) / 1e6)
    print(f"upgrades: {len(dark)}, variant {args.variant}"
          f"{', beforeSwitch ' + args.before_switch if args.before_switch else ''} (visor {visor}, default intervals: "
          f"status 500 ms, pending 100 ms)")
    print("| measure (ms) | n | mean | median | p95 | worst |")
    print("|---|---|---|---|---|---|")
    print(summary("detection: ready -> SIGTERM", detection))
    print(summary("dark time: old exit -> new exec", dark))
    if auto:
        installs = install_times(os.path.join(work, "visor.log"))
        if installs:
            print(summary("install: accepted -> folder ready", installs))
        github.close()
    shutil.rmtree(work)


def install_times(log_path):
    """Milliseconds from each "upgrade: installing vK" line to its "folder for vK is ready
    (installed and version checked)" line, from the timestamps of Visor's text log."""
    import datetime
    started, times = {}, []
    for line in open(log_path):
        parts = line.split(" ", 2)
        if len(parts) < 3 or not parts[0].endswith("Z"):
            continue
        at = datetime.datetime.strptime(parts[0], "%Y-%m-%dT%H:%M:%S.%fZ")
        text = parts[2].lstrip()
        if text.startswith("upgrade: installing "):
            started[text.split()[2]] = at
        elif "is ready (installed and version checked)" in text:
            tag = text.split()[3]
            if tag in started:
                times.append((at - started.pop(tag)).total_seconds() * 1000)
    return times


def read(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


if __name__ == "__main__":
    main()
