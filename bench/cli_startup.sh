#!/usr/bin/env bash
# Start-up cost of the visor binary as operators and systemd meet it, with hyperfine: the
# glibc and the static musl release builds running `visor version` (process start only) and
# `visor check` on a valid home with one version folder (parses config.toml and
# run-config.toml, checks the binary, asks the idle core for its status).
# Usage: bench/cli_startup.sh [RUNS]   (default 200 runs per command)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
command -v hyperfine >/dev/null || { echo "hyperfine not found: apt-get install -y hyperfine"; exit 1; }
cargo build --quiet --release --bin visor --bin zeta-core-sim
glibc=$PWD/target/release/visor
sim=$PWD/target/release/zeta-core-sim
musl=""
if command -v musl-gcc >/dev/null; then
  CC_x86_64_unknown_linux_musl=musl-gcc cargo build --quiet --release --target x86_64-unknown-linux-musl --bin visor
  musl=$PWD/target/x86_64-unknown-linux-musl/release/visor
fi
work=$(mktemp -d /tmp/visor-cli.XXXXXX)
core=""
cleanup() {
  if [ -n "$core" ]; then kill "$core" 2>/dev/null || true; wait "$core" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=bench/idle_home.sh
. bench/idle_home.sh
idle_home "$work" "$sim"
ln -s genesis "$work/home/current"
# The core answers, as it would on a running validator.
"$work/home/genesis/zeta" start >/dev/null 2>&1 &
core=$!
for _ in $(seq 100); do [ -S "$work/core.sock" ] && break; sleep 0.05; done
commands=("$glibc version" "$glibc check --home $work/home")
names=("version (glibc)" "check (glibc)")
if [ -n "$musl" ]; then
  commands+=("$musl version" "$musl check --home $work/home")
  names+=("version (static musl)" "check (static musl)")
fi
args=()
for i in "${!commands[@]}"; do args+=(-n "${names[$i]}" "${commands[$i]}"); done
hyperfine -N --warmup 20 --runs "$runs" --time-unit millisecond \
  --export-markdown "$work/startup.md" "${args[@]}" >/dev/null 2>&1
cat "$work/startup.md"
