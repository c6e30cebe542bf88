#!/usr/bin/env bash
# Every test: installs what is missing, then formatting, lints, the whole
# test suite (unit, property, end-to-end, netns), builds the fuzz targets
# and runs each briefly (scripts/fuzz.sh).
# Run as root (the namespace tests need it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/ensure-deps.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -q -- -D warnings
step "cargo test (debug)"
cargo test --workspace -q
step "fuzz targets build (stable)"
cargo build -q --manifest-path engine/fuzz/Cargo.toml --bins
step "fuzz: every target ${FUZZ_SECONDS:-8} s (cargo-fuzz, nightly; fails on a crash)"
scripts/fuzz.sh "${FUZZ_SECONDS:-8}"
step "bench: instruction-count gate (callgrind, ci-small vs bench/baselines/quick.json, +3%)"
command -v valgrind >/dev/null || apt-get install -y -q valgrind >/dev/null
cargo build --release -q -p bench --bin sluice-bench
T=${CARGO_TARGET_DIR:-target}
"$T/release/sluice-bench" run --suite ci --instr-only --out "$T/bench-ci/results.json"
"$T/release/sluice-bench" compare bench/baselines/quick.json "$T/bench-ci/results.json" --max-instr-regress 3
step "all tests passed"
