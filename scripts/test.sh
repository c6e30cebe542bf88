#!/usr/bin/env bash
# Every test: installs what is missing, then formatting, lints, the whole
# test suite (unit, property, end-to-end, netns), and builds the fuzz targets.
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
step "fuzz targets build"
cargo build -q --manifest-path engine/fuzz/Cargo.toml --bins
step "all tests passed"
