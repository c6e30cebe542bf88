#!/usr/bin/env bash
# Delivered packets/second for 64-byte UDP through four forwarders, with the
# same generator in the same run:
#   ceiling  xdp-redirect: an in-kernel XDP forwarder with no processing (MACs
#            rewritten, DEVMAP redirect; bench/bpf/xdp_fwd.bpf.c loaded by
#            `peer-gen xdp-fwd`), which no AF_XDP forwarder can beat
#   sluice   sluice run (AF_XDP, full pipeline, the policy in $SLUICE_POLICY)
#   testpmd  dpdk-testpmd --vdev net_af_xdp (io forward mode)
#   kernel   Linux forwarding with an nftables ruleset equivalent to the policy
# and prints, for each, the delivered rate at saturation (the generator
# offering all it can: `peer-gen tx`, an XDP live-frames generator held on
# a down veth so that each BPF_PROG_RUN call costs microseconds; ~10 Mpps
# of 64-byte frames attempted on this VM) in Mpps, and the ratios. With
# SEARCH_STEPS > 0 also the loss-free rates, found by bench/peers/search.py
# in the manner of FD.io CSIT's MLRsearch (short trials narrow the interval,
# then REPEAT full-length trials confirm it; bench/peers/trial.sh runs one
# trial with the same generator, paced), and what the forwarder delivers
# when offered OVERLOAD times its NDR. Topology: bench/peers/topo.sh.
#
# CPU budget: one core for everything the forwarder does, kernel and user
# space: its worker (sluice, testpmd) and p0's receive work (threaded NAPI,
# its thread pinned to DUT_CORE, the same for every forwarder); the
# generator and the sink share the other core. What bounds the loss-free
# rates on this rig (veth's 256-frame receive ring, the generator's cost
# per call): tuning.md, "Loss-free rates".
#
# Usage (root): bench/peers/run.sh [ceiling] [sluice] [testpmd] [kernel]   (default: all)
# (Connection setup rate, sluice vs the kernel's conntrack + nftables NAT, on
# the same topology: bench/peers/cps.sh, or `sluice-bench cps`.)
#
# Each peer ends in one line `result PEER saturation MPPS offered MPPS ndr
# MPPS pdr MPPS overload K:PPS,...` (`-` where not measured, 0 when every
# trial lost more). A peer that does not start or delivers nothing stops the
# script with `run.sh: error: PEER: why` on stderr and exit status 1.
# Hugepages for testpmd are reserved and a hugetlbfs mounted if missing, and
# put back on exit.
# Environment:
#   SECONDS_RUN  saturation window per peer in seconds (default 10), after
#                WARMUP seconds (default 2)
#   SEARCH_STEPS trial budget of the loss-free search (default 0: skip),
#                which starts at max(1.5 x saturation, SEARCH_MAX pps
#                (2000000)): NDR (loss <= NDR_LOSS, 0.001) and PDR (<=
#                PDR_LOSS, 0.005); a search that runs out of budget or that
#                the generator cannot pace reports lower bounds (`capped`)
#   SHORT, TRIAL seconds of the search's narrowing trials (1) and of its
#                confirming and overload trials (5)
#   REPEAT       full-length passes that confirm a loss-free rate (2)
#   WIDTH        relative width the search narrows to (0.02)
#   OVERLOAD     factors of the NDR offered after the search (2,5)
#   RATES        one TRIAL-long trial at each of these rates (pps), printed
#   TESTPMD      the testpmd command (default dpdk-testpmd)
#   FLOWS        UDP flows (source ports) from the generator (default 256)
#   RULES        rules in the generated policy / ruleset (default 1000)
#   SLUICE_POLICY  policy path for sluice (default: generated, see gen-rules.py)
#   NFT_CT       per-connection (default: verdict cached in the conntrack mark,
#                as sluice classifies once per connection) | per-packet
#   NFT_MATCH    linear (default: one rule per entry) | set (one set lookup)
#   GEN_CORE, DUT_CORE  cores for the generator and the device under test
#                (default 0 and the last core)
#   SLUICE_ARGS  extra `sluice run` arguments; BATCH  sluice's workers.batch (64);
#                BUSY_POLL=true  sluice's workers.busy_poll
#   TESTPMD_ARGS extra testpmd application arguments (e.g. "--rxd 8192 --txd 8192")
#   IPERF_SECONDS  iperf3 TCP gen -> sink through sluice and the kernel
#                (default 5; 0 skips), client and server on GEN_CORE
#   KEEP=1       keep the logs and reports (printed path)
# Everything runs under `flock /tmp/sluice-cpu.lock`; the topology is removed
# on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${SLUICE_PEERS_LOCKED:-}" != 1 ]; then
  export SLUICE_PEERS_LOCKED=1
  exec flock /tmp/sluice-cpu.lock "$0" "$@"
fi

die() { echo "run.sh: error: $*" >&2; exit 1; }

PEERS=("$@"); [ ${#PEERS[@]} -gt 0 ] || PEERS=(ceiling sluice testpmd kernel)
for p in "${PEERS[@]}"; do
  case $p in ceiling|sluice|testpmd|kernel) ;; *) die "$p: no such peer (ceiling, sluice, testpmd, kernel)" ;; esac
done
SECONDS_RUN=${SECONDS_RUN:-10}
WARMUP=${WARMUP:-2}
FLOWS=${FLOWS:-256}
SEARCH_STEPS=${SEARCH_STEPS:-0}
TRIAL=${TRIAL:-5}
SHORT=${SHORT:-1}
REPEAT=${REPEAT:-2}
WIDTH=${WIDTH:-0.02}
OVERLOAD=${OVERLOAD:-2,5}
NDR_LOSS=${NDR_LOSS:-0.001}
PDR_LOSS=${PDR_LOSS:-0.005}
TESTPMD=${TESTPMD:-dpdk-testpmd}
RULES=${RULES:-1000}
NFT_CT=${NFT_CT:-per-connection}
NFT_MATCH=${NFT_MATCH:-linear}
LAST_CORE=$(( $(nproc) - 1 ))
GEN_CORE=${GEN_CORE:-0}
DUT_CORE=${DUT_CORE:-$LAST_CORE}
P=${PEER_PREFIX:-pr}
GEN=${P}gen DUT=${P}dut SINK=${P}sink
P0_MAC=02:00:00:70:01:01
OUT=$(mktemp -d /tmp/sluice-peers.XXXXXX)
R=target/release

HP_BEFORE= HP_MOUNTED= HP_MADE_DIR=
hugepages_up() { # testpmd's 512 MB: reserved and mounted if missing
  HP_NOW=$(cat /proc/sys/vm/nr_hugepages)
  if [ "$HP_NOW" -lt 256 ]; then
    HP_BEFORE=$HP_NOW
    echo 1024 > /proc/sys/vm/nr_hugepages
    [ "$(cat /proc/sys/vm/nr_hugepages)" -ge 256 ] || die "testpmd: could not reserve 256 hugepages"
  fi
  if ! awk '$3 == "hugetlbfs" {f=1} END {exit !f}' /proc/mounts; then
    [ -d /dev/hugepages ] || { mkdir -p /dev/hugepages; HP_MADE_DIR=1; }
    mount -t hugetlbfs nodev /dev/hugepages || die "testpmd: cannot mount hugetlbfs on /dev/hugepages"
    HP_MOUNTED=1
  fi
}
hugepages_down() {
  [ -z "$HP_MOUNTED" ] || umount /dev/hugepages || true
  [ -z "$HP_MADE_DIR" ] || rmdir /dev/hugepages 2>/dev/null || true
  [ -z "$HP_BEFORE" ] || echo "$HP_BEFORE" > /proc/sys/vm/nr_hugepages || true
}

cleanup() {
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null || true; done
  bench/peers/topo.sh down || true
  hugepages_down
  if [ -n "${KEEP:-}" ]; then echo "logs kept in $OUT" >&2; else rm -rf "$OUT"; fi
}
trap cleanup EXIT

echo "==> building (release)" >&2
cargo build --release -q -p engine --bin sluice -p bench --bin peer-gen

echo "==> topology" >&2
bench/peers/topo.sh up
# Threaded NAPI lets us put p0's receive work on the DUT's core: each
# forwarder gets exactly one core for all of its work (kernel and user
# space), the generator the other. A veth has NAPI only with an XDP program
# attached or GRO on, and `threaded` can only be set (and the thread
# pinned) once NAPI exists, before any forwarder attaches: so GRO is on for
# p0 for every peer (the kernel peer also needs it to take the generator's
# XDP frames). That is the one offload changed from the kernel's defaults;
# checksum offloads stay as a pod's veth has them.
ip netns exec $DUT ethtool -K p0 gro on >/dev/null
ip netns exec $DUT sh -c 'echo 1 > /sys/class/net/p0/threaded'
for pid in $(pgrep -f "napi/p0-"); do taskset -pc "$DUT_CORE" "$pid" >/dev/null; done

# The policy and its nftables twin, from one rule list.
python3 bench/peers/gen-rules.py --rules "$RULES" --out "$OUT" --nft-ct "$NFT_CT" --nft-match "$NFT_MATCH"
POLICY=${SLUICE_POLICY:-$OUT/policy}

# What trial.sh (run by search.py and fixed_rates) needs.
export OUT R FLOWS GEN_CORE P0_MAC GEN_NS=$GEN GEN_SINK_NS=$SINK

gen() { # output file, extra args
  local out=$1; shift
  taskset -c "$GEN_CORE" $R/peer-gen tx --netns $GEN --interface g0 --dst-mac $P0_MAC \
    --hold-interface gh0 --src-ip 10.70.1.2 --dst-ip 10.70.2.2 --flows "$FLOWS" "$@" > "$out"
}

jget() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

saturate() { # name: the DUT is running
  local name=$1
  taskset -c "$GEN_CORE" $R/peer-gen sink --netns $SINK --interface k0 \
    --warmup "$WARMUP" --seconds "$SECONDS_RUN" > "$OUT/$name.sink.json" &
  local sink=$!
  sleep 0.3
  gen "$OUT/$name.gen.json" --seconds "$((WARMUP + SECONDS_RUN + 1))" --call 100000 --burst 64 \
    || die "$name: the generator failed"
  wait $sink || die "$name: the sink failed"
  printf "%-8s saturation: delivered %.3f Mpps (generator offered %.3f Mpps)\n" "$name" \
    "$(jget "$OUT/$name.sink.json" mpps)" "$(jget "$OUT/$name.gen.json" mpps)" >&2
  [ "$(jget "$OUT/$name.gen.json" sent)" -gt 0 ] || die "$name: the generator sent nothing"
  [ "$(jget "$OUT/$name.sink.json" delivered)" -gt 0 ] \
    || die "$name: delivered nothing (the generator offered $(jget "$OUT/$name.gen.json" mpps) Mpps)"
}

search() { # name: loss-free rates by search.py (MLRsearch-like), then overload
  local name=$1
  # A forwarder can lose more at saturation than at its loss-free rate
  # (receive livelock), so the search starts at least at SEARCH_MAX.
  local top
  top=$(python3 -c "print(int(max(1.5 * $(jget "$OUT/$name.sink.json" mpps) * 1e6, ${SEARCH_MAX:-2000000})))")
  local res
  res=$(python3 bench/peers/search.py --name "$name" --top "$top" --ndr-loss "$NDR_LOSS" \
      --pdr-loss "$PDR_LOSS" --short "$SHORT" --trial "$TRIAL" --repeat "$REPEAT" --width "$WIDTH" \
      --max-trials "$SEARCH_STEPS" --overload "$OVERLOAD" --json "$OUT/$name.search.json") \
    || die "$name: the loss-free search failed"
  set -- $res
  echo "$2" > "$OUT/$name.ndr"
  echo "$4" > "$OUT/$name.pdr"
  [ "$6" = 0 ] || echo "$name" >> "$OUT/capped"
  echo "$8" > "$OUT/$name.overload"
  printf "%-8s NDR (loss <= %s): %.3f Mpps, PDR (loss <= %s): %.3f Mpps, overload (x NDR: delivered pps) %s, %s trials\n" \
    "$name" "$NDR_LOSS" "$(python3 -c "print($2 / 1e6)")" "$PDR_LOSS" "$(python3 -c "print($4 / 1e6)")" "$8" "${10}" >&2
}

fixed_rates() { # name: one trial at each of RATES
  local r
  for r in $RATES; do
    echo "         trial $r pps ${TRIAL}s: $(bench/peers/trial.sh "$1" "$r" "$TRIAL")" >&2
  done
}

measure() {
  saturate "$1"
  [ -z "${RATES:-}" ] || fixed_rates "$1"
  [ "$SEARCH_STEPS" -gt 0 ] && search "$1" || true
}

iperf_tcp() { # name: TCP throughput gen -> sink through the running DUT
  [ "${IPERF_SECONDS:-5}" -gt 0 ] || return 0
  ip -n $GEN route replace 10.70.2.0/24 via 10.70.1.1
  ip -n $SINK route replace 10.70.1.0/24 via 10.70.2.1
  ip netns exec $SINK taskset -c "$GEN_CORE" iperf3 -s -1 -p 5201 > /dev/null 2>&1 &
  local srv=$!
  sleep 0.5
  ip netns exec $GEN taskset -c "$GEN_CORE" iperf3 -c 10.70.2.2 -p 5201 -t "${IPERF_SECONDS:-5}" -J \
    > "$OUT/$1.iperf.json" 2>&1 || true
  wait $srv || true
  GBPS[$1]=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['end']['sum_received']['bits_per_second']/1e9)" "$OUT/$1.iperf.json" 2>/dev/null || echo 0)
  printf "%-8s iperf3 TCP: %.2f Gbit/s\n" "$1" "${GBPS[$1]}"
}

run_sluice() {
  cat > "$OUT/sluice.yaml" <<EOF
ports:
  - {name: gen, interface: p0, addresses: ["10.70.1.1/24"]}
  - {name: sink, interface: p1, addresses: ["10.70.2.1/24"]}
workers: {cores: [$DUT_CORE], batch: ${BATCH:-64}, busy_poll: ${BUSY_POLL:-false}}
policy: {paths: ["$POLICY"]}
routes:
  - {prefix: "10.70.1.0/24", port: gen}
  - {prefix: "10.70.2.0/24", port: sink}
neighbors:
  - {ip: "10.70.1.2", mac: "02:00:00:70:01:02", port: gen}
  - {ip: "10.70.2.2", mac: "02:00:00:70:02:02", port: sink}
metrics: {listen: null}
control: {socket: "$OUT/control.sock"}
EOF
  $R/sluice run --config "$OUT/sluice.yaml" --netns $DUT --ready-file "$OUT/ready" --json \
    ${SLUICE_ARGS:-} > "$OUT/sluice.report.json" 2> "$OUT/sluice.err" &
  local pid=$!
  for _ in $(seq 200); do [ -f "$OUT/ready" ] && break; sleep 0.05; done
  [ -f "$OUT/ready" ] || { tail -5 "$OUT/sluice.err" >&2; die "sluice: did not start (see above)"; }
  measure sluice
  iperf_tcp sluice
  kill -INT $pid; wait $pid || true
  python3 - "$OUT/sluice.report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
d = {k: v for k, v in r["drops"].items() if v}
print(f"         sluice: rx {r['rx']} tx {r['tx']} tx_ring_full {r['tx_ring_full']} drops {d}")
EOF
}

run_ceiling() {
  $R/peer-gen xdp-fwd --netns $DUT --a p0 --b p1 --a-next-mac 02:00:00:70:01:02 \
    --b-next-mac 02:00:00:70:02:02 --ready-file "$OUT/ceiling.ready" 2> "$OUT/ceiling.err" &
  local pid=$!
  for _ in $(seq 100); do [ -f "$OUT/ceiling.ready" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
  [ -f "$OUT/ceiling.ready" ] || { tail -5 "$OUT/ceiling.err" >&2; die "ceiling: peer-gen xdp-fwd did not attach (see above)"; }
  # The forwarder's NAPI work runs on p0's thread, pinned to the DUT core.
  measure ceiling
  kill $pid; wait $pid 2>/dev/null || true
}

run_testpmd() {
  command -v "$TESTPMD" >/dev/null || die "testpmd: $TESTPMD not found (package dpdk)"
  hugepages_up
  # nsenter keeps the host's mount namespace (bpffs for libxdp).
  nsenter --net=/run/netns/$DUT "$TESTPMD" -l "$GEN_CORE,$DUT_CORE" --main-lcore "$GEN_CORE" \
    --no-pci --file-prefix sluicepeers -m 512 \
    --vdev net_af_xdp0,iface=p0,start_queue=0,queue_count=1 \
    --vdev net_af_xdp1,iface=p1,start_queue=0,queue_count=1 \
    -- --forward-mode=io --nb-cores=1 --auto-start --stats-period=3600 ${TESTPMD_ARGS:-} \
    > "$OUT/testpmd.log" 2>&1 &
  local pid=$!
  local started=
  for _ in $(seq 200); do
    grep -q "Start automatic packet forwarding\|io packet forwarding" "$OUT/testpmd.log" 2>/dev/null && { started=1; break; }
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
  done
  if ! kill -0 $pid 2>/dev/null; then
    tail -8 "$OUT/testpmd.log" >&2; die "testpmd: $TESTPMD exited before forwarding (see above)"
  fi
  [ -n "$started" ] || { tail -8 "$OUT/testpmd.log" >&2; die "testpmd: not forwarding after 10 s (see above)"; }
  sleep 1
  measure testpmd
  kill -INT $pid; wait $pid || true
  grep -E "RX-packets|TX-packets|RX-dropped|TX-dropped" "$OUT/testpmd.log" | tail -4 | sed 's/^/         testpmd: /'
}

run_kernel() {
  ip netns exec $DUT nft -f "$OUT/ruleset.nft" || die "kernel: nft -f ruleset.nft failed"
  measure kernel
  iperf_tcp kernel
  ip netns exec $DUT nft delete table inet sluice_bench
}

declare -A MPPS NDR PDR GBPS
declare -A LABEL=([ceiling]="xdp-redirect (ceiling)" [sluice]=sluice [testpmd]=testpmd [kernel]="kernel + nftables")
mpps_of() { [ -f "$1" ] && python3 -c "print($(cat "$1") / 1e6)" || echo -; }
for p in "${PEERS[@]}"; do
  echo "==> $p" >&2
  "run_$p"
  MPPS[$p]=$(jget "$OUT/$p.sink.json" mpps)
  NDR[$p]=$(mpps_of "$OUT/$p.ndr")
  PDR[$p]=$(mpps_of "$OUT/$p.pdr")
  OVL=-; [ ! -f "$OUT/$p.overload" ] || OVL=$(cat "$OUT/$p.overload")
  echo "result $p saturation ${MPPS[$p]} offered $(jget "$OUT/$p.gen.json" mpps) ndr ${NDR[$p]} pdr ${PDR[$p]} overload $OVL"
done

echo
printf "64-byte UDP, %s flows, %s rules; saturation over %ss; loss-free search %s x %ss trials (NDR loss <= %s, PDR <= %s); generator core %s, DUT core %s\n" \
  "$FLOWS" "$RULES" "$SECONDS_RUN" "$SEARCH_STEPS" "$TRIAL" "$NDR_LOSS" "$PDR_LOSS" "$GEN_CORE" "$DUT_CORE"
[ ! -f "$OUT/capped" ] || echo "  the paced generator could not offer the rate asked in some trials of: $(sort -u "$OUT/capped" | tr '\n' ' ')(NDR/PDR are lower bounds there)"
printf "  %-24s %10s %10s %10s  (Mpps)\n" peer saturation NDR PDR
f3() { if [ "$1" = - ]; then echo -; else printf %.3f "$1"; fi; }
for p in "${PEERS[@]}"; do
  printf "  %-24s %10s %10s %10s\n" "${LABEL[$p]}" "$(f3 "${MPPS[$p]}")" "$(f3 "${NDR[$p]}")" "$(f3 "${PDR[$p]}")"
done
if [ -n "${MPPS[sluice]:-}" ]; then
  for p in ceiling testpmd kernel; do
    [ -n "${MPPS[$p]:-}" ] || continue
    python3 -c "
r = lambda x, y: f'{float(x) / float(y):.2f}x' if y not in ('-', '0', '0.0') and x != '-' else 'n/a'
print(f'  sluice / ${LABEL[$p]}: saturation {r(\"${MPPS[sluice]}\", \"${MPPS[$p]}\")}, NDR {r(\"${NDR[sluice]}\", \"${NDR[$p]}\")}, PDR {r(\"${PDR[sluice]}\", \"${PDR[$p]}\")}')"
  done
fi
if [ -n "${GBPS[sluice]:-}" ] && [ -n "${GBPS[kernel]:-}" ]; then
  python3 -c "
a, b = ${GBPS[sluice]}, ${GBPS[kernel]}
print(f'  iperf3 TCP: sluice {a:.2f} Gbit/s, kernel {b:.2f} Gbit/s: ' + (f'{a / b:.2f}x' if b else 'n/a'))"
fi
