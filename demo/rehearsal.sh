#!/usr/bin/env bash
# Upgrade rehearsal: builds Visor and the core-node simulator, makes a throwaway home folder
# with a genesis version (v1.0.0) and a prepared upgrade folder (v1.1.0), and runs
# `visor run` in the foreground. The simulated core accepts v1.1.0 after 2 s and stops at the
# upgrade block 2 s later; Visor stops v1.0.0, switches `current` and starts v1.1.0. The
# script then sends SIGTERM and prints what happened.
#
# Another build of Visor can be rehearsed, for example a release's arm64 binary under
# qemu-user on an x86_64 machine (the simulator stays the host's build: qemu-user hands the
# exec of a host program to the kernel):
#
#   VISOR=dist/visor-0.1.0-aarch64-linux-musl/visor VISOR_RUNNER=qemu-aarch64 demo/rehearsal.sh
#
#   VISOR          the visor binary to rehearse (default: built here, target/release/visor)
#   VISOR_RUNNER   a command that runs it, such as qemu-aarch64 (default: none)
#   SIM            the zeta-core-sim binary (default: built here)
#
# With VISOR set it also checks `VISOR --version` and fails on any step that goes wrong:
# `init`, `check` of the home it made (which must report no problem), the upgrade, `status`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SIM:-}" ] || [ -z "${VISOR:-}" ]; then
  bins=()
  [ -n "${VISOR:-}" ] || bins+=(--bin visor)
  [ -n "${SIM:-}" ] || bins+=(--bin zeta-core-sim)
  cargo build --quiet --release "${bins[@]}"
fi
strict=0
[ -z "${VISOR:-}" ] || strict=1
visor_bin=$(realpath "${VISOR:-$PWD/target/release/visor}")
sim=$(realpath "${SIM:-$PWD/target/release/zeta-core-sim}")
# The command that runs Visor, runner first (word-split on purpose: "qemu-aarch64 -L /x").
# shellcheck disable=SC2206
visor=(${VISOR_RUNNER:-} "$visor_bin")
if [ "$strict" = 1 ]; then
  echo "--- ${visor[*]} --version ---"
  "${visor[@]}" --version
fi

work=$(mktemp -d /tmp/visor-rehearsal.XXXXXX)
home="$work/home"
trap 'rm -rf "$work"' EXIT
"${visor[@]}" init --home "$home" >/dev/null
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
echo "--- visor check ---"
# Problems go to standard output, which must stay empty; info lines (such as releases not
# being signature-checked, as here) go to standard error and are only shown.
checked=$("${visor[@]}" check --home "$home" 2>"$work/check.err") && status=0 || status=$?
cat "$work/check.err"
[ -z "$checked" ] || echo "$checked"
echo "(exit status $status)"
if [ "$strict" = 1 ] && { [ "$status" != 0 ] || [ -n "$checked" ]; }; then
  echo "rehearsal FAILED: visor check reports problems or exits non-zero"; exit 1
fi
echo "--- visor run ---"
"${visor[@]}" run --home "$home" &
pid=$!
for _ in $(seq 1 600); do
  grep -q '"version":"v1.1.0"' "$work/record.jsonl" 2>/dev/null && grep -q 'listening' <(grep -A1 '"version":"v1.1.0"' "$work/record.jsonl") && break
  sleep 0.1
done
sleep 1
"${visor[@]}" status --home "$home" && status=0 || status=$?
if [ "$strict" = 1 ] && [ "$status" != 0 ]; then
  kill -TERM "$pid"; echo "rehearsal FAILED: visor status exited with $status"; exit 1
fi
kill -TERM "$pid"
wait "$pid" && status=0 || status=$?
echo "--- visor exited with status $status ---"
echo "current -> $(readlink "$home/current")"
if [ "$strict" = 1 ] && [ "$status" != 0 ]; then
  echo "rehearsal FAILED: visor run exited with $status after SIGTERM"; exit 1
fi
if [ "$(readlink "$home/current")" = "v1.1.0" ]; then
  echo "rehearsal passed: v1.0.0 was replaced by v1.1.0 at block 1200"
else
  echo "rehearsal FAILED: current does not point at v1.1.0"; exit 1
fi
