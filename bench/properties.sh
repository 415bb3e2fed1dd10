#!/usr/bin/env bash
# Bad-input properties of tests/properties.rs with many more generated cases than CI runs
# (CI: 256 to 1,024 per property), on the release build.
# Usage: bench/properties.sh [CASES]   (default 20000 per property)
set -euo pipefail
cd "$(dirname "$0")/.."
PROPTEST_CASES=${1:-20000} cargo test --quiet --release --locked --test properties 2>&1 | grep -v '^$'
