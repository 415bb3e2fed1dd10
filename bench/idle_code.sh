#!/usr/bin/env bash
# Regenerates release/idle-code.ld, the linker script that puts the code an idle Visor runs
# (supervising a core that answers, nothing pending) in one place at the start of the
# static binaries' code, so that few pages of code stay resident while Visor waits
# (src/supervise/memory.rs gives the pages of start-up and installs back).
#
# It builds the static musl release with symbols (target/idle-code/), runs `visor run`
# under valgrind's callgrind supervising the simulator at the default poll, zeroes the
# counts once the core answers and the start-up is over, records SECONDS of idle, and
# writes one input-section pattern per function that ran (the hash of each symbol
# wildcarded, so the script stays valid across versions and toolchains until the code of
# the idle loop changes). Run it after changing that code; the footprint bench
# (bench/footprint.sh) shows when the file has gone stale (resident code grows).
#
# Usage: bench/idle_code.sh [SECONDS]   (default 30)
# Needs: valgrind (callgrind_control), musl-tools, the x86_64-unknown-linux-musl target.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
for tool in valgrind callgrind_control musl-gcc nm python3; do
  command -v "$tool" >/dev/null || { echo "bench/idle_code.sh: $tool is missing" >&2; exit 1; }
done
target=x86_64-unknown-linux-musl
export CARGO_TARGET_DIR=$PWD/target/idle-code
CARGO_PROFILE_RELEASE_STRIP=false CC_x86_64_unknown_linux_musl=musl-gcc \
  cargo build --quiet --locked --release --target "$target" --bin visor --bin zeta-core-sim
visor=$CARGO_TARGET_DIR/$target/release/visor
sim=$CARGO_TARGET_DIR/$target/release/zeta-core-sim
work=$(mktemp -d /tmp/visor-idle-code.XXXXXX)
pid=
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/home/genesis"
echo "# defaults" > "$work/home/config.toml"
ln -s "$sim" "$work/home/genesis/zeta"
echo "--sim-version v1 --socket $work/core.sock" > "$work/home/genesis/sim-options"
cat > "$work/home/genesis/run-config.toml" <<TOML
name = "v1"
[zeta]
  [zeta.binary]
    path = "zeta"
    args = ["start"]
  [zeta.rpc]
    socketPath = "$work/core.sock"
    httpPath = "/rpc"
TOML
valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$work/callgrind.out" \
  "$visor" run --home "$work/home" 2>"$work/visor.log" &
pid=$!
for _ in $(seq 300); do grep -q "core is answering" "$work/visor.log" && break; sleep 0.1; done
grep -q "core is answering" "$work/visor.log" || { cat "$work/visor.log"; exit 1; }
sleep 5
callgrind_control -z "$pid" >/dev/null 2>&1
sleep "$seconds"
callgrind_control -d "$pid" >/dev/null 2>&1
# Where valgrind loaded Visor: code run after Visor gave its pages back is recorded at its
# run-time address, outside the binary's object ("???").
base=$(awk -v bin="$visor" '$6 == bin { split($1, range, "-"); print range[1]; exit }' "/proc/$pid/maps")
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=
python3 - "$work/callgrind.out.1" "$visor" "$seconds" "$base" > release/idle-code.ld <<'PY'
import bisect, re, subprocess, sys
dump, binary, seconds, base = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4], 16)
# Every instruction address callgrind counted (absolute "0x..", relative "+n"/"-n", "*"), as
# an address of the binary: those of the unknown object "???" are run-time addresses.
addresses, current, objects, unknown = set(), 0, {}, False
for line in open(dump):
    if line.startswith("ob="):
        number, _, name = line[3:].strip().partition(" ")
        if name:
            objects[number] = name
        unknown = objects.get(number) == "???"
        continue
    token = line.split(maxsplit=1)[0] if line.strip() else ""
    if token.startswith("0x"):
        current = int(token, 16)
    elif token[:1] in ("+", "-") and token[1:]:
        step = int(token[1:], 16) if token[1:].startswith("0x") else int(token[1:])
        current += step if token[0] == "+" else -step
    elif token != "*":
        continue
    addresses.add(current - base if unknown else current)
symbols = []
for line in subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True,
                           text=True, check=True).stdout.splitlines():
    fields = line.split()
    if len(fields) == 4 and fields[2] in "tT":
        symbols.append((int(fields[0], 16), int(fields[1], 16), fields[3]))
symbols.sort()
starts = [s[0] for s in symbols]
names = set()
for address in addresses:
    i = bisect.bisect_right(starts, address) - 1
    if i >= 0 and symbols[i][0] <= address < symbols[i][0] + max(symbols[i][1], 1):
        names.add(symbols[i][2])
patterns = set()
for name in names:
    pattern = re.sub(r"17h[0-9a-f]{16}E(\..*)?$", "17h*E*", name)  # legacy mangling's hash
    pattern = re.sub(r"\.(llvm\.)?\d+$", "*", pattern)              # LTO's local copies
    if pattern.startswith("_R"):
        pattern = re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", pattern)        # v0's crate hashes
    patterns.add(pattern)
print(f"{len(addresses)} instruction addresses in {len(names)} functions ({len(patterns)} patterns)",
      file=sys.stderr)
print(f"/* Generated by bench/idle_code.sh ({seconds} s of idle): the functions an idle Visor")
print("   runs, first in the code of the static binaries (build.rs passes this file to the")
print("   linker for the musl targets). A pattern that matches nothing is harmless. */")
print("SECTIONS\n{\n  .text.idle :\n  {")
for pattern in sorted(patterns):
    print(f"    *(.text.{pattern})")
print("  }\n}\nINSERT BEFORE .text;")
PY
echo "release/idle-code.ld: $(grep -c '^    \*(' release/idle-code.ld) patterns"
