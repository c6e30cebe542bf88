#!/usr/bin/env bash
# Runs every fuzz target of engine/fuzz for a bounded time with cargo-fuzz
# (libFuzzer, AddressSanitizer) on the nightly toolchain, from the seeds in
# engine/fuzz/seeds/<target>/ and a fresh corpus; fails on the first crash,
# naming the target and the input that crashed it.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 8)] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
secs=${1:-8}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(parse_pipeline stateful_pipeline pcap_reader config policy felix_stream)
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal || {
    echo "fuzz: no nightly toolchain and none could be installed (cargo-fuzz needs one)" >&2
    exit 1
  }
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked -q cargo-fuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd engine
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  dirs=("$work/$t")
  if [ -d "fuzz/seeds/$t" ]; then dirs+=("fuzz/seeds/$t"); fi
  if ! cargo +nightly fuzz run -O "$t" "${dirs[@]}" -- \
      -max_total_time="$secs" -use_value_profile=1 -print_final_stats=1 >"$work/$t.log" 2>&1; then
    tail -n 40 "$work/$t.log" >&2
    echo "fuzz: $t crashed (the input is under engine/fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  execs=$(grep -o 'number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' | tail -n 1)
  echo "fuzz: $t: ${execs:-?} executions in ${secs} s, no crash"
done
