#!/usr/bin/env python3
"""A core that changes its mind at every poll: release lookups, threads and hooks of `visor run`.

The simulator answers each status request with the next of `vA@100`, `vB@200`, nothing, in a
cycle (`--flap`), so the accepted release changes at every poll; auto-install is on with
prefetch, against a loopback stand-in for GitHub (bench/fake_github.py) that has neither
release (404). For SECONDS seconds the script samples Visor's thread count
(/proc/PID/status) every 50 ms and counts the release lookups the stand-in answered.

With `--tags N` the core cycles through N releases (v9.0.0@1000, v9.0.1@1001, ...) instead;
with `--hook-seconds S` an `onAccepted` hook that sleeps S seconds is configured, and the
script also samples how many runs of it are alive at once (processes running the hook's
script) and counts the runs started. `--poll-ms MS` sets upgradePollIntervalMilliseconds (a
faster poll means more changes of mind); `--no-install` turns auto-install off.

Usage: bench/flapping.py [SECONDS] [--tags N] [--hook-seconds S] [--poll-ms MS] [--no-install]
                         [--visor PATH --sim PATH]
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


def thread_names(pid):
    names = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/comm") as f:
                    names.append(f.read().strip())
            except OSError:
                pass
    except OSError:
        pass
    return sorted(names)


def hook_processes(script):
    """Processes whose command line runs `script` (the hook's shell, not its children)."""
    count = 0
    needle = script.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    count += 1
        except OSError:
            pass
    return count


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("seconds", nargs="?", type=float, default=60)
    parser.add_argument("--visor")
    parser.add_argument("--sim")
    parser.add_argument("--tags", type=int, default=0)
    parser.add_argument("--hook-seconds", type=float, default=0)
    parser.add_argument("--poll-ms", type=int, default=0)
    parser.add_argument("--no-install", action="store_true")
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
    if args.tags:
        flap = ",".join(f"v9.0.{i}@{1000 + i}" for i in range(args.tags))
    else:
        flap = "vA@100,vB@200,none"
    with open(os.path.join(folder, "sim-options"), "w") as f:
        f.write(f"--sim-version v1 --socket {work}/core.sock --flap {flap}\n")
    with open(os.path.join(folder, "run-config.toml"), "w") as f:
        f.write(f'name = "v1"\n[zeta]\n  [zeta.binary]\n    path = "zeta"\n'
                f'    args = ["start", "--home", "{work}/node"]\n'
                f'  [zeta.rpc]\n    socketPath = "{work}/core.sock"\n    httpPath = "/rpc"\n')
    hook = os.path.join(work, "on-accepted.sh")
    with open(hook, "w") as f:
        f.write(f"#!/bin/sh\nsleep {args.hook_seconds}\n")
    os.chmod(hook, 0o755)
    with open(os.path.join(home, "config.toml"), "w") as f:
        if args.poll_ms:
            f.write(f"upgradePollIntervalMilliseconds = {args.poll_ms}\n")
        f.write(f'[autoInstall]\nenabled = {"false" if args.no_install else "true"}\n'
                f'apiUrl = "{github.url}"\n')
        if args.hook_seconds:
            f.write(f'[hooks]\nonAccepted = ["{hook}"]\ntimeoutSeconds = 600\n')
    log = open(os.path.join(work, "visor.log"), "w")
    visor = subprocess.Popen([args.visor, "run", "--home", home], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL)
    peak, peak_hooks, end, died = 0, 0, time.monotonic() + args.seconds, None
    peak_names = []
    while time.monotonic() < end:
        if visor.poll() is not None:
            died = visor.returncode
            break
        count = threads(visor.pid)
        if count > peak:
            peak, peak_names = count, thread_names(visor.pid)
        if args.hook_seconds:
            peak_hooks = max(peak_hooks, hook_processes(hook))
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
        "threads_at_peak": {name: peak_names.count(name) for name in sorted(set(peak_names))},
        "tags": args.tags or 2,
        "hook_seconds": args.hook_seconds,
        "peak_hook_processes": peak_hooks,
        "hook_starts": text.count("hook onAccepted: running"),
        "releases_accepted": text.count("accepted at block"),
        "visor_died_with": died,
        "visor_exit": visor.returncode,
    }))
    if died is not None:
        print(text, file=sys.stderr)
    github.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
