#!/usr/bin/env bash
# Visor's footprint while supervising an idle core (the simulator) at the default poll
# interval: resident memory, threads and open file descriptors from /proc, and CPU time over
# the measuring window.
# Usage: bench/footprint.sh [SECONDS] [VISOR_BINARY [SIMULATOR_BINARY]]
# (default 60 s and the release build; pass the static musl build to measure that; with both
# binaries given nothing is built). With MAX_RSS_KIB set, exits 1 when VmRSS at the end is
# larger (CI's check that release/idle-code.ld still matches the idle loop).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
if [ -z "${3:-}" ]; then
  cargo build --quiet --release --bin visor --bin zeta-core-sim
fi
visor=$(realpath "${2:-$PWD/target/release/visor}")
sim=$(realpath "${3:-$PWD/target/release/zeta-core-sim}")
work=$(mktemp -d /tmp/visor-footprint.XXXXXX)
trap 'kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
# shellcheck source=bench/idle_home.sh
. bench/idle_home.sh
idle_home "$work" "$sim"
"$visor" run --home "$work/home" 2>"$work/visor.log" &
pid=$!
for _ in $(seq 100); do grep -q "core is answering" "$work/visor.log" && break; sleep 0.1; done
grep -q "core is answering" "$work/visor.log" || { cat "$work/visor.log"; exit 1; }
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(cpu); t0=$(date +%s.%N)
sleep "$seconds"
after=$(cpu); t1=$(date +%s.%N)
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
threads=$(awk '/^Threads/ {print $2}' "/proc/$pid/status")
fds=$(ls "/proc/$pid/fd" | wc -l)
cpu_pct=$(awk -v b="$before" -v a="$after" -v t="$ticks" -v s0="$t0" -v s1="$t1" \
  'BEGIN {printf "%.4f", 100 * (a - b) / t / (s1 - s0)}')
echo "binary: $visor ($(stat -c %s "$visor") bytes)"
echo "| measure | value |"
echo "|---|---|"
echo "| resident memory (VmRSS) | $rss_kb KiB |"
echo "| peak resident memory (VmHWM) | $hwm_kb KiB |"
echo "| threads | $threads |"
echo "| open file descriptors | $fds |"
echo "| CPU over ${seconds} s idle (% of one core) | $cpu_pct % ($((after - before)) ticks of 1/$ticks s) |"
if [ -n "${MAX_RSS_KIB:-}" ] && [ "$rss_kb" -gt "$MAX_RSS_KIB" ]; then
  echo "VmRSS $rss_kb KiB is over $MAX_RSS_KIB KiB: if the code of the idle loop changed, regenerate release/idle-code.ld with bench/idle_code.sh"
  exit 1
fi
