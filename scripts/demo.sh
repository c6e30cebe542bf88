#!/usr/bin/env bash
# The main job on its embedded default: installs what is missing, builds,
# and runs `sluice demo` (as root): a throwaway namespace topology, the live
# data plane between its namespaces, real traffic, a summary, cleanup.
# Extra arguments go to `sluice demo` (`--seconds N`, `--requests N`, `--keep`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/ensure-deps.sh
cargo build --release --bin sluice -q
exec target/release/sluice demo "$@"
