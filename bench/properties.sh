#!/usr/bin/env bash
# Bad-input properties of tests/integration/properties.rs with many more generated cases than
# CI runs (CI: 256 to 1,024 per property), on the release build, from a seed taken from the
# clock (a failing case prints it; pass SEED to replay a run).
# Usage: bench/properties.sh [CASES] [SEED]   (default 20000 per property)
set -euo pipefail
cd "$(dirname "$0")/.."
PROPTEST_CASES=${1:-20000} VISOR_SEED=${2:-random} cargo test --quiet --release --locked --test integration \
  properties:: 2>&1 | grep -v '^$'
