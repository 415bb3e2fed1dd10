#!/usr/bin/env bash
# SIGKILLs of `visor run` at random moments of auto-installs (release lookup, download,
# extraction, version check, rename), COUNT of them (default 200), with the checks of
# tests/integration/fault_injection_install.rs after each, from a seed taken from the clock
# (printed; pass SEED to replay a run). Usage: bench/fault_injection_install.sh [COUNT] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
VISOR_FAULT_KILLS=${1:-200} VISOR_SEED=${2:-random} cargo test --quiet --release --locked --test integration \
  -- --nocapture fault_injection_install::sigkill_at_random_moments_of_auto_installs
