#!/usr/bin/env python3
"""Hook output against Visor's memory and log: the two cases of issue 17, item 3.

1. `flood`: an `onAccepted` hook prints 400 MB without a newline
   (`head -c 400000000 /dev/zero | tr '\\0' y`); reported: Visor's peak resident memory
   (VmHWM from /proc/PID/status) before the hook and after it finished.
2. `yes`: an `onAccepted` hook runs `yes` for 3 s (`timeout 3 yes`); reported: the log lines
   Visor wrote for the hook's output (every line but its own "running" and "finished").

Each case starts the release build of `visor run` on a fresh home whose simulated core
accepts release v2 at once (so `onAccepted` runs), waits for the hook to finish, then stops
Visor. Usage: bench/hook_output.py [--visor PATH --sim PATH] (default: release builds of this
tree). Prints one JSON object. Targets: peak RSS < 8 MB, at most 1,001 lines.
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vm(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def wait_for(path, needles, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with open(path, errors="replace") as f:
            text = f.read()
        if any(needle in text for needle in needles):
            return True
        time.sleep(0.05)
    return False


def run_case(args, hook):
    work = tempfile.mkdtemp(prefix="visor-hookout-")
    home = os.path.join(work, "home")
    folder = os.path.join(home, "genesis")
    os.makedirs(folder)
    os.chmod(home, 0o755)
    os.symlink(args.sim, os.path.join(folder, "zeta"))
    with open(os.path.join(folder, "sim-options"), "w") as f:
        f.write(f"--sim-version v1 --socket {work}/core.sock --announce v2@100000\n")
    with open(os.path.join(folder, "run-config.toml"), "w") as f:
        f.write(f'name = "v1"\n[zeta]\n  [zeta.binary]\n    path = "zeta"\n'
                f'    args = ["start", "--home", "{work}/node"]\n'
                f'  [zeta.rpc]\n    socketPath = "{work}/core.sock"\n    httpPath = "/rpc"\n')
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write("statusPollIntervalMilliseconds = 100\n[hooks]\n"
                f"onAccepted = {json.dumps(hook)}\ntimeoutSeconds = 120\n")
    log_path = os.path.join(work, "visor.log")
    log = open(log_path, "w")
    visor = subprocess.Popen([args.visor, "run", "--home", home], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL)
    result = {}
    try:
        if not wait_for(log_path, ["hook onAccepted: running"], 30):
            raise SystemExit(f"the hook did not start; see {log_path}")
        result["peak_rss_kib_before_hook"] = vm(visor.pid, "VmHWM")
        started = time.monotonic()
        # `timeout 3 yes` ends with status 124: the hook "failed".
        if not wait_for(log_path, ["hook onAccepted: finished", "hook onAccepted failed"], 300):
            raise SystemExit(f"the hook did not finish; see {log_path}")
        result["hook_seconds"] = round(time.monotonic() - started, 2)
        result["peak_rss_kib"] = vm(visor.pid, "VmHWM")
        result["rss_kib_after"] = vm(visor.pid, "VmRSS")
    finally:
        visor.send_signal(signal.SIGTERM)
        try:
            visor.wait(timeout=30)
        except subprocess.TimeoutExpired:
            visor.kill()
        log.close()
    prefix = "hook onAccepted: "
    lines = []
    with open(log_path, errors="replace") as f:
        for line in f:
            if prefix in line:
                rest = line.split(prefix, 1)[1].rstrip("\n")
                if not rest.startswith("running for ") and rest != "finished":  # Visor's own
                    lines.append(rest)
    result["hook_log_lines"] = len(lines)
    result["last_hook_line"] = lines[-1][:200] if lines else None
    shutil.rmtree(work, ignore_errors=True)
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--visor")
    parser.add_argument("--sim")
    args = parser.parse_args()
    if not args.visor:
        subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "visor", "--bin",
                        "zeta-core-sim"], cwd=ROOT, check=True)
        args.visor = os.path.join(ROOT, "target/release/visor")
        args.sim = os.path.join(ROOT, "target/release/zeta-core-sim")
    args.visor, args.sim = os.path.abspath(args.visor), os.path.abspath(args.sim)
    flood = run_case(args, ["/bin/sh", "-c", "head -c 400000000 /dev/zero | tr '\\0' y"])
    yes = run_case(args, ["/usr/bin/timeout", "3", "/usr/bin/yes"])
    print(json.dumps({"flood_400MB_no_newline": flood, "yes_3s": yes}, indent=1))


if __name__ == "__main__":
    main()
