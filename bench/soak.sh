#!/usr/bin/env bash
# Soak: UPGRADES consecutive upgrades with the simulator at the fastest poll intervals (10 ms),
# on the release build, sampling Visor's open descriptors, threads and VmRSS from /proc every
# SAMPLE_EVERY upgrades; fails if they do not stay flat (tests/integration/soak.rs explains the
# rule).
# CI runs the same test with 200 upgrades on the debug build.
# Usage: bench/soak.sh [UPGRADES] [SAMPLE_EVERY]   (default 1000 and 100)
set -euo pipefail
cd "$(dirname "$0")/.."
export VISOR_SOAK_UPGRADES=${1:-1000}
export VISOR_SOAK_SAMPLE_EVERY=${2:-100}
cargo test --quiet --release --locked --test integration -- --nocapture --test-threads 1 soak:: 2>&1 \
  | grep -Ev '^(running [0-9]+ tests?|test result:.*0 passed.*)$' | grep -v '^$'
