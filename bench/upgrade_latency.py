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
(default 50 upgrades, variant `prepared`: every version folder exists before its upgrade).

The `auto-install-prefetch` variant is a hook for auto-install: the folders v1..vN are not
made up front but fetched by Visor from a local release server as soon as each upgrade is
accepted ([autoInstall] enabled, prefetch = true, apiUrl = http://127.0.0.1:PORT). It is not
implemented yet; see BENCHMARKS.md, "Gaps left for auto-install".
"""
import argparse, json, os, random, shutil, signal, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build():
    subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "visor", "--bin", "zeta-core-sim"],
                   cwd=ROOT, check=True)
    return (os.path.join(ROOT, "target/release/visor"), os.path.join(ROOT, "target/release/zeta-core-sim"))


def make_version(home, work, sim, k, upgrades, rng):
    folder = os.path.join(home, "genesis" if k == 0 else f"v{k}")
    os.makedirs(folder)
    os.symlink(sim, os.path.join(folder, "zeta"))
    options = ["--sim-version", f"v{k}", "--socket", f"{work}/core.sock", "--record", f"{work}/record.jsonl"]
    if k < upgrades:
        ready_ms = 800 + rng.randint(0, 500)
        options += ["--announce", f"v{k + 1}@{1000 * (k + 1)}", "--announce-after", "300ms",
                    "--ready-after", f"{ready_ms}ms"]
    with open(os.path.join(folder, "sim-options"), "w") as f:
        f.write(" ".join(options) + "\n")
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
    args = parser.parse_args()
    if args.variant == "auto-install-prefetch":
        # HOOK (auto-install): serve releases v1..vN from a local HTTP server (GitHub's
        # releases/tags/{tag} JSON plus a zip asset with its sha256 digest), write
        # [autoInstall] enabled = true, prefetch = true, apiUrl = "http://127.0.0.1:PORT" into
        # config.toml, make only genesis here, and measure the same two figures plus the
        # install time (accepted -> folder renamed into place) from Visor's log.
        print("variant auto-install-prefetch: not implemented yet (auto-install is being built); "
              "see BENCHMARKS.md, 'Gaps left for auto-install'", file=sys.stderr)
        sys.exit(2)
    upgrades = args.upgrades
    visor, sim = build()
    work = tempfile.mkdtemp(prefix="visor-bench-")
    home = os.path.join(work, "home")
    os.makedirs(home)
    open(os.path.join(home, "config.toml"), "w").write("# defaults\n")
    rng = random.Random(7)
    for k in range(upgrades + 1):
        make_version(home, work, sim, k, upgrades, rng)
    record = os.path.join(work, "record.jsonl")
    log = open(os.path.join(work, "visor.log"), "w")
    proc = subprocess.Popen([visor, "run", "--home", home], stderr=log, stdout=log)
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
    print(f"upgrades: {len(dark)}, variant {args.variant} (visor {visor}, default intervals: "
          f"status 500 ms, pending 100 ms)")
    print("| measure (ms) | n | mean | median | p95 | worst |")
    print("|---|---|---|---|---|---|")
    print(summary("detection: ready -> SIGTERM", detection))
    print(summary("dark time: old exit -> new exec", dark))
    shutil.rmtree(work)


def read(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


if __name__ == "__main__":
    main()
