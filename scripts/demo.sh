#!/usr/bin/env bash
# The main job on its embedded default: installs what is missing, builds,
# and runs sluice on the bundled workload and config.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/ensure-deps.sh
cargo build --release --bin sluice -q
exec target/release/sluice replay --config pcap-fixtures/sluice.yaml --pcap pcap-fixtures/imix.pcap --loops 200 "$@"
