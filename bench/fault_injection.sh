#!/usr/bin/env bash
# Fault-injection campaign: SIGKILL of Visor at KILLS random moments of upgrades (split over
# three timing profiles), each followed by the checks of tests/integration/fault_injection.rs,
# on the release build. CI runs the same tests with 105 kills on the debug build. The seed is
# printed; pass SEED to replay a run.
# Usage: bench/fault_injection.sh [KILLS] [SEED]   (default 1000 kills, a seed from the clock)
set -euo pipefail
cd "$(dirname "$0")/.."
export VISOR_FAULT_ITERATIONS=${1:-1000}
export VISOR_SEED=${2:-random}
cargo test --quiet --release --locked --test integration -- --nocapture fault_injection::sigkill_at_random_moments 2>&1 \
  | grep -v '^$'
