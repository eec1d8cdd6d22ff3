#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property and process-level tests (real EAL on
# virtual devices). Installs missing packages itself, so it runs on a clean clone as root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace 2>&1 | tee /tmp/scrubd-test.log
# Bounded fuzzing of the parser, the whole pipeline and the cookie check (fails on any crash).
scripts/fuzz.sh "${SCRUBD_FUZZ_SECONDS:-30}"
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' /tmp/scrubd-test.log
