#!/usr/bin/env bash
# Backup bench (issue 18): a 2 GiB tree of 10,000 files (seeded sizes, bench/backup_tree.py)
# backed up by Visor's engine (examples/backup_tree.rs, release build) and by `cp -a` of the
# same tree in the same run:
#   1. copies, on the file system of /var/tmp (this machine's own);
#   2. clones, on a loop-mounted XFS made with reflink=1 (as root; skipped with the reason
#      otherwise), the tree and the backups on that XFS.
# Each measure is ROUNDS rounds, the order of engine and cp alternating. As root the page
# cache is dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed command, so
# the source is read from disk ("cold"); otherwise the runs are warm and the output says so.
# The engine's time includes its syncfs (the backup is on disk before it is renamed and
# counted complete); cp -a does not sync, so "cp -a + sync" is shown too.
# Everything is made under /var/tmp/visor-bench-backup-PID and removed at the end (the XFS is
# unmounted first), also on failure or Ctrl-C.
# Usage: bench/backup.sh [ROUNDS] [SEED]   (default 3 and 18)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SEED=${2:-18}
WORK=/var/tmp/visor-bench-backup-$$
ENGINE=$PWD/target/release/examples/backup_tree
MNT=$WORK/xfs

cleanup() {
  if mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT" || umount -l "$MNT"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cargo build --quiet --release --example backup_tree
mkdir -p "$WORK"

if [ "$(id -u)" = 0 ]; then CACHE=cold; else CACHE=warm; fi
settle() {
  sync
  if [ "$CACHE" = cold ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
rate() { awk -v bytes="$1" -v s="$2" 'BEGIN { printf "%.0f", bytes / s / 1048576 }'; }
used_kib() { df -k --output=used "$1" | tail -1 | tr -d ' '; }

# bench LABEL SRC DEST_BASE: ROUNDS rounds of engine and cp -a; prints one line per command
# and round, then the medians.
bench() {
  local label=$1 src=$2 base=$3 bytes round start wall engine_wall engine_inner cp_wall sync_wall
  bytes=$(du -sb --apparent-size "$src" | cut -f1)
  local -a engine_walls=() engine_inners=() cp_walls=() cpsync_walls=()
  for round in $(seq 1 "$ROUNDS"); do
    for who in engine cp; do
      if [ $((round % 2)) = 0 ]; then who=$([ "$who" = engine ] && echo cp || echo engine); fi
      rm -rf "$base/visor" "$base/cp"
      settle
      local before
      before=$(used_kib "$base")
      if [ "$who" = engine ]; then
        start=$(now)
        line=$("$ENGINE" "$src" --folder "$base/visor" --from v1 --to "v$((round + 1))" --height 100)
        engine_wall=$(since "$start")
        engine_inner=$(sed -n 's/.* seconds=\([0-9.]*\) .*/\1/p' <<<"$line")
        echo "$label round $round: engine $engine_wall s wall ($engine_inner s in the engine, $(rate "$bytes" "$engine_wall") MiB/s), used +$(( $(used_kib "$base") - before )) KiB; $(sed 's/.*files=/files=/' <<<"$line")"
        engine_walls+=("$engine_wall")
        engine_inners+=("$engine_inner")
      else
        start=$(now)
        cp -a "$src" "$base/cp"
        cp_wall=$(since "$start")
        start=$(now)
        sync
        sync_wall=$(since "$start")
        local total
        total=$(awk -v a="$cp_wall" -v b="$sync_wall" 'BEGIN { printf "%.3f", a + b }')
        echo "$label round $round: cp -a $cp_wall s ($(rate "$bytes" "$cp_wall") MiB/s), then sync $sync_wall s: cp -a + sync $total s ($(rate "$bytes" "$total") MiB/s), used +$(( $(used_kib "$base") - before )) KiB"
        cp_walls+=("$cp_wall")
        cpsync_walls+=("$total")
      fi
    done
  done
  rm -rf "$base/visor" "$base/cp"
  median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
  local e i c s
  e=$(median "${engine_walls[@]}"); i=$(median "${engine_inners[@]}")
  c=$(median "${cp_walls[@]}"); s=$(median "${cpsync_walls[@]}")
  echo "$label median of $ROUNDS ($CACHE cache): engine $e s wall / $i s inside ($(rate "$bytes" "$e") MiB/s); cp -a $c s ($(rate "$bytes" "$c") MiB/s); cp -a + sync $s s ($(rate "$bytes" "$s") MiB/s); engine vs cp -a: $(awk -v e="$e" -v c="$c" 'BEGIN { printf "%.0f", 100 * c / e }') % of its throughput, vs cp -a + sync: $(awk -v e="$e" -v c="$s" 'BEGIN { printf "%.0f", 100 * c / e }') %"
}

echo "backup bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(uname -r), $CACHE cache, seed $SEED, $ROUNDS rounds"

# 1. Copies on this machine's file system.
FS=$(df --output=fstype /var/tmp | tail -1)
mkdir -p "$WORK/copy"
python3 bench/backup_tree.py "$WORK/copy/src" "$SEED"
echo "copies: source and backups on /var/tmp ($FS)"
bench "copy($FS)" "$WORK/copy/src" "$WORK/copy"
rm -rf "$WORK/copy"

# 2. Clones on a loop-mounted XFS with reflink.
if [ "$(id -u)" != 0 ]; then
  echo "clones: skipped: mounting a loop XFS needs root"
elif ! command -v mkfs.xfs >/dev/null; then
  echo "clones: skipped: mkfs.xfs not found (apt-get install xfsprogs)"
else
  truncate -s 8G "$WORK/xfs.img"
  mkfs.xfs -q -m reflink=1 "$WORK/xfs.img"
  mkdir -p "$MNT"
  mount -o loop "$WORK/xfs.img" "$MNT"
  python3 bench/backup_tree.py "$MNT/src" "$SEED"
  echo "clones: source and backups on a loop-mounted XFS (reflink=1, $(xfs_info "$MNT" | grep -o 'bsize=[0-9]*' | head -1)) in a sparse file on /var/tmp ($FS)"
  bench "clone(xfs)" "$MNT/src" "$MNT"
fi
