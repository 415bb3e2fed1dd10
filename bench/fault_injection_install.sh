#!/usr/bin/env bash
# SIGKILLs of `visor run` at random moments of auto-installs (release lookup, download,
# extraction, version check, rename), COUNT of them (default 200), with the checks of
# tests/fault_injection_install.rs after each. Usage: bench/fault_injection_install.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
VISOR_FAULT_KILLS=${1:-200} cargo test --quiet --release --locked --test fault_injection_install \
  -- --nocapture sigkill_at_random_moments_of_auto_installs
