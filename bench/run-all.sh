#!/usr/bin/env bash
# Runs every benchmark and long-running proof of bench/ in one go on this machine, one after
# the other so they do not disturb each other, and writes everything they print to
# target/bench/run-all-<UTC time>.txt (the tables in BENCHMARKS.md and RELIABILITY.md come
# from such a run). Takes about 15 minutes on a 2-core machine.
#
#   upgrade_latency.py 50        detection latency and dark time over 50 upgrades, prepared
#                                folders and auto-install with prefetch from a loopback server
#   restart_overhead.py 30       restart overhead of Visor, s6-supervise and runsv
#   footprint_peers.py 60        idle RSS, threads, fds, CPU of the same three (+ static musl)
#   cli_startup.sh 200           start-up time of `visor version` and `visor check` (hyperfine)
#   hook_output.py               Visor's peak RSS under a 400 MB line from a hook; log lines of
#                                a `yes` hook over 3 s
#   soak.sh 1000                 1,000 upgrades in a row, fds/threads/RSS flat
#   fault_injection.sh 1000      1,000 SIGKILLs of Visor at random moments of upgrades
#   fault_injection_install.sh 200  200 SIGKILLs of Visor at random moments of auto-installs
#   properties.sh 20000          the bad-input properties with 20,000 cases each
#   backup.sh 3                  the backup engine against cp -a on a 2 GiB tree: copies on
#                                /var/tmp, clones on a loop-mounted XFS (as root)
#
# Usage: bench/run-all.sh [--quick]   (--quick: small counts, a smoke test of the scripts)
# As root with apt-get, missing tools (s6, runit, hyperfine, musl-tools) are installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--quick" ]; then
  latency=5 restarts=3 seconds=5 runs=20 soak=100 kills=12 cases=500 backups=1
else
  latency=50 restarts=30 seconds=60 runs=200 soak=1000 kills=1000 cases=20000 backups=3
fi

missing=()
command -v s6-supervise >/dev/null || missing+=(s6)
command -v runsv >/dev/null || missing+=(runit)
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v musl-gcc >/dev/null || missing+=(musl-tools)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing tools: ${missing[*]} (Debian packages); install them and run again" >&2
    exit 1
  fi
fi
rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || true

mkdir -p target/bench
out=target/bench/run-all-$(date -u +%Y%m%dT%H%M%SZ).txt
run() {
  printf '\n## %s\n\n' "$*" | tee -a "$out"
  local started=$SECONDS
  "$@" 2>&1 | tee -a "$out"
  printf '\n(%s s)\n' "$((SECONDS - started))" | tee -a "$out"
}
{
  echo "# bench/run-all.sh on $(hostname), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "$(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel $(uname -r); $(rustc --version); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
} | tee "$out"
run python3 bench/upgrade_latency.py "$latency"
run python3 bench/upgrade_latency.py "$latency" --variant auto-install-prefetch
run python3 bench/restart_overhead.py "$restarts"
run python3 bench/footprint_peers.py "$seconds"
run bash bench/cli_startup.sh "$runs"
run python3 bench/hook_output.py
run bash bench/soak.sh "$soak"
run bash bench/fault_injection.sh "$kills"
run bash bench/fault_injection_install.sh 200
run bash bench/properties.sh "$cases"
run bash bench/backup.sh "$backups"
echo
echo "all results: $out"
