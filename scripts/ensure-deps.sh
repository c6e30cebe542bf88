#!/usr/bin/env bash
# Installs the system packages sluice's build, tests, demo and benchmarks
# need, when they are missing. Idempotent: a second run installs nothing.
# Usage: scripts/ensure-deps.sh   (as root, on Debian/Ubuntu)
set -euo pipefail

PACKAGES=(
  # XDP program build (engine/build.rs) and AF_XDP
  clang llvm libbpf-dev libxdp-dev libelf-dev zlib1g-dev m4 gcc-multilib xdp-tools
  # Tests: namespaces, captures, traffic, the kernel reference
  iproute2 iputils-ping tcpdump tshark tcpreplay iperf3 nftables ethtool curl python3 procps
  # Benchmarks: peers and instruction counts
  dpdk dpdk-dev valgrind
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-deps: missing packages: ${missing[*]}; run as root (or install them)" >&2
    exit 1
  fi
  echo "ensure-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    echo "ensure-deps: cargo is in ~/.cargo/bin; add it to PATH" >&2
  else
    echo "ensure-deps: no Rust toolchain; install one with rustup (https://rustup.rs)" >&2
  fi
  exit 1
fi
