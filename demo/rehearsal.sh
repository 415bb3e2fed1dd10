#!/usr/bin/env bash
# Upgrade rehearsal: builds Visor and the core-node simulator, makes a throwaway home folder
# with a genesis version (v1.0.0) and a prepared upgrade folder (v1.1.0), and runs
# `visor run` in the foreground. The simulated core accepts v1.1.0 after 2 s and stops at the
# upgrade block 2 s later; Visor stops v1.0.0, switches `current` and starts v1.1.0. The
# script then sends SIGTERM and prints what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --bin visor --bin zeta-core-sim
visor="$PWD/target/release/visor"
sim="$PWD/target/release/zeta-core-sim"

work=$(mktemp -d /tmp/visor-rehearsal.XXXXXX)
home="$work/home"
trap 'rm -rf "$work"' EXIT
"$visor" init --home "$home" >/dev/null
rm -rf "$home/vX.X.X"
cat > "$home/config.toml" <<TOML
# Quick timings for the rehearsal; see visor-config(5) for every key.
restartsDelaySeconds = 1
stopSignalTimeoutSeconds = 5
TOML

make_version() { # folder version extra-simulator-flags...
  local folder="$home/$1" version="$2"; shift 2
  mkdir -p "$folder"
  printf '#!/bin/sh\nexec %q --sim-version %q --socket %q --record %q %s "$@"\n' \
    "$sim" "$version" "$work/core.sock" "$work/record.jsonl" "$*" > "$folder/zeta"
  chmod +x "$folder/zeta"
  cat > "$folder/run-config.toml" <<TOML
name = "$version"
[zeta]
  [zeta.binary]
    path = "zeta"
    args = ["start", "--home", "$work/node"]
  [zeta.rpc]
    socketPath = "$work/core.sock"
    httpPath = "/rpc"
TOML
}
make_version genesis v1.0.0 --announce v1.1.0@1200 --announce-after 2s --ready-after 4s
make_version v1.1.0 v1.1.0

echo "rehearsal home: $home (removed at the end)"
echo "--- visor run ---"
"$visor" run --home "$home" &
pid=$!
for _ in $(seq 1 300); do
  grep -q '"version":"v1.1.0"' "$work/record.jsonl" 2>/dev/null && grep -q 'listening' <(grep -A1 '"version":"v1.1.0"' "$work/record.jsonl") && break
  sleep 0.1
done
sleep 1
"$visor" status --home "$home" || true
kill -TERM "$pid"
wait "$pid" && status=0 || status=$?
echo "--- visor exited with status $status ---"
echo "current -> $(readlink "$home/current")"
if [ "$(readlink "$home/current")" = "v1.1.0" ]; then
  echo "rehearsal passed: v1.0.0 was replaced by v1.1.0 at block 1200"
else
  echo "rehearsal FAILED: current does not point at v1.1.0"; exit 1
fi
