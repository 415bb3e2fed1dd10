#!/usr/bin/env python3
"""Makes the backup bench's tree: FILES files in 100 folders whose sizes are drawn from a
seeded log-normal distribution (many small files, a few large ones, as a node's database
has) and scaled to sum to exactly TOTAL bytes. Contents are seeded pseudo-random bytes (no
zeros runs, so nothing is accidentally sparse).

Usage: bench/backup_tree.py DIR [SEED] [FILES] [TOTAL]   (defaults 18, 10000, 2 GiB)
Prints one line: files, bytes, smallest, median, largest.
"""

import os
import random
import sys


def sizes(rng, files, total):
    weights = [rng.lognormvariate(0.0, 1.6) for _ in range(files)]
    scale = total / sum(weights)
    out = [int(w * scale) for w in weights]
    # The rounding remainder goes to the largest file, so the sum is exact.
    out[out.index(max(out))] += total - sum(out)
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 18
    files = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    total = int(sys.argv[4]) if len(sys.argv) > 4 else 2 << 30
    rng = random.Random(seed)
    chosen = sizes(rng, files, total)
    pool = rng.randbytes(32 << 20)
    for index, size in enumerate(chosen):
        folder = os.path.join(root, f"{index % 100:02d}")
        os.makedirs(folder, exist_ok=True)
        start = rng.randrange(len(pool))
        with open(os.path.join(folder, f"{index:05d}.sst"), "wb") as out:
            left = size
            while left > 0:
                piece = pool[start:start + min(left, 8 << 20)]
                if not piece:
                    start = 0
                    continue
                out.write(piece)
                left -= len(piece)
                start = (start + len(piece)) % len(pool)
    ordered = sorted(chosen)
    print(f"tree: {files} files, {sum(chosen)} bytes, smallest {ordered[0]}, "
          f"median {ordered[len(ordered) // 2]}, largest {ordered[-1]}")


if __name__ == "__main__":
    main()
