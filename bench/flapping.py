#!/usr/bin/env python3
"""A core that changes its mind at every poll: release lookups and threads of `visor run`.

The simulator answers each status request with the next of `vA@100`, `vB@200`, nothing, in a
cycle (`--flap`), so the accepted release changes at every poll; auto-install is on with
prefetch, against a loopback stand-in for GitHub (bench/fake_github.py) that has neither
release (404). For SECONDS seconds the script samples Visor's thread count
(/proc/PID/status) every 50 ms and counts the release lookups the stand-in answered.

Usage: bench/flapping.py [SECONDS] [--visor PATH --sim PATH]
(default 60 s, release builds of this tree). Prints one JSON object.
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from fake_github import FakeGithub  # noqa: E402


def threads(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("seconds", nargs="?", type=float, default=60)
    parser.add_argument("--visor")
    parser.add_argument("--sim")
    args = parser.parse_args()
    if not args.visor:
        subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "visor", "--bin", "zeta-core-sim"],
                       cwd=ROOT, check=True)
        args.visor = os.path.join(ROOT, "target/release/visor")
        args.sim = os.path.join(ROOT, "target/release/zeta-core-sim")
    github = FakeGithub()
    work = tempfile.mkdtemp(prefix="visor-flap-")
    home = os.path.join(work, "home")
    folder = os.path.join(home, "genesis")
    os.makedirs(folder)
    os.symlink(args.sim, os.path.join(folder, "zeta"))
    with open(os.path.join(folder, "sim-options"), "w") as f:
        f.write(f"--sim-version v1 --socket {work}/core.sock --flap vA@100,vB@200,none\n")
    with open(os.path.join(folder, "run-config.toml"), "w") as f:
        f.write(f'name = "v1"\n[zeta]\n  [zeta.binary]\n    path = "zeta"\n'
                f'    args = ["start", "--home", "{work}/node"]\n'
                f'  [zeta.rpc]\n    socketPath = "{work}/core.sock"\n    httpPath = "/rpc"\n')
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write(f'[autoInstall]\nenabled = true\napiUrl = "{github.url}"\n')
    log = open(os.path.join(work, "visor.log"), "w")
    visor = subprocess.Popen([args.visor, "run", "--home", home], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL)
    peak, end, died = 0, time.monotonic() + args.seconds, None
    while time.monotonic() < end:
        if visor.poll() is not None:
            died = visor.returncode
            break
        peak = max(peak, threads(visor.pid))
        time.sleep(0.05)
    if died is None:
        visor.send_signal(signal.SIGTERM)
        try:
            visor.wait(timeout=30)
        except subprocess.TimeoutExpired:
            visor.kill()
    log.close()
    with open(os.path.join(work, "visor.log")) as f:
        text = f.read()
    print(json.dumps({
        "seconds": args.seconds,
        "release_lookups": github.lookups,
        "installs_started": text.count("upgrade: installing"),
        "flips_seen": text.count("is no longer accepted by the core"),
        "peak_threads": peak,
        "visor_died_with": died,
        "visor_exit": visor.returncode,
    }))
    github.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
