#!/usr/bin/env bash
# Connection setup rate: new TCP connections per second through the device
# under test, sluice against the kernel's conntrack + nftables, same
# generator, same run. Topology: bench/peers/topo.sh (gen ns -- dut ns --
# sink ns over veths), plus $SOURCES client addresses on g0 (10.70.1.100..)
# and $BACKENDS backend addresses on k0 (10.70.2.2..).
#
# Peers (default: all four, in this order):
#   sluice        `sluice run`: service VIP 10.70.9.9:80 -> the backends' :8080
#                 (Maglev), masquerade of 10.70.1.0/24 leaving p1 to
#                 10.70.2.1, and a Calico policy on the backends
#   kernel        Linux forwarding + nftables the way kube-proxy's nftables
#                 mode writes it: a service map, `numgen random` over
#                 per-endpoint dnat chains, masquerade on p1, and a forward
#                 filter chain (ct state established,related accept; invalid
#                 drop; the same rules as the policy; policy drop)
#   sluice-plain, kernel-plain   the same without NAT: the client connects
#                 to 10.70.2.2:8080 itself (policy / filter chain only)
# Load: `cps-gen` (bench/src/bin/cps-gen.rs): a client in the gen ns keeps
# $CONCURRENCY connections in flight (connect, 32-byte request, 64-byte
# reply, the server closes first), the server in the sink ns; both pinned to
# GEN_CORE, the forwarder to DUT_CORE. Receive work follows: RPS sends g0's
# and k0's receive processing (the client's and server's TCP) to GEN_CORE and
# p0's and p1's to DUT_CORE, whose NAPI threads (sluice's XDP, once attached)
# are pinned there too; offloads stay at the kernel's defaults. Each core's
# busy share over the window is printed: a forwarder whose core is not busy
# while the generator's is was not the bound.
#
# Usage (root): bench/peers/cps.sh [sluice] [kernel] [sluice-plain] [kernel-plain]
#
# Each peer ends in one line `result PEER cps X completed N failed F
# setup_p50_us A setup_p99_us B exchange_p50_us C exchange_p99_us D gen_busy G
# dut_busy U dut_us_per_conn T` (busy as a fraction of one core over the
# window; T = U / cps: the DUT core's time per connection, the comparable
# figure when the generator's core, not the DUT's, is the bound). A peer
# that does not start or completes no connection stops the script with
# `cps.sh: error: PEER: why` on stderr and exit status 1.
# Environment:
#   SECONDS_RUN  measured window per peer in seconds (default 10), after
#                WARMUP seconds (default 2)
#   CONCURRENCY  connections in flight (default 64)
#   SOURCES      client addresses (default 32): with ports 10000-60999 each,
#                no 4-tuple repeats within a run (see cps-gen)
#   BACKENDS     service backends (default 16): masquerade maps every client
#                to one address, so each backend adds a 64k-port space for
#                the translated tuples, which stay taken while the
#                connections close (kernel TIME_WAIT 120 s, sluice 30 s)
#   RULES        deny rules before the allow in the policy and the filter
#                chain (default 10)
#   TIMEOUT_MS   a connection not done by then is a failure (default 2000)
#   BATCH, BUSY_POLL=true   sluice's workers.batch (64) and workers.busy_poll
#   GEN_CORE, DUT_CORE  (default 0 and the last core)
#   KEEP=1       keep the logs (printed path)
# The kernel's conntrack table (nf_conntrack_max, global) is raised to
# sluice's default of 1048576 entries for the run if smaller, and put back on
# exit. Everything runs under `flock /tmp/sluice-cpu.lock`; the topology is
# removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${SLUICE_PEERS_LOCKED:-}" != 1 ]; then
  export SLUICE_PEERS_LOCKED=1
  exec flock /tmp/sluice-cpu.lock "$0" "$@"
fi

die() { echo "cps.sh: error: $*" >&2; exit 1; }

PEERS=("$@"); [ ${#PEERS[@]} -gt 0 ] || PEERS=(sluice kernel sluice-plain kernel-plain)
for p in "${PEERS[@]}"; do
  case $p in sluice|kernel|sluice-plain|kernel-plain) ;;
    *) die "$p: no such peer (sluice, kernel, sluice-plain, kernel-plain)" ;; esac
done
SECONDS_RUN=${SECONDS_RUN:-10}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-64}
SOURCES=${SOURCES:-32}
BACKENDS=${BACKENDS:-16}
RULES=${RULES:-10}
TIMEOUT_MS=${TIMEOUT_MS:-2000}
LAST_CORE=$(( $(nproc) - 1 ))
GEN_CORE=${GEN_CORE:-0}
DUT_CORE=${DUT_CORE:-$LAST_CORE}
[ "$SOURCES" -ge 1 ] && [ "$SOURCES" -le 100 ] || die "SOURCES must be 1..100"
[ "$BACKENDS" -ge 1 ] && [ "$BACKENDS" -le 100 ] || die "BACKENDS must be 1..100"
P=${PEER_PREFIX:-pr}
GEN=${P}gen DUT=${P}dut SINK=${P}sink
G_MAC=02:00:00:70:01:02 P0_MAC=02:00:00:70:01:01 P1_MAC=02:00:00:70:02:01 K_MAC=02:00:00:70:02:02
VIP=10.70.9.9
OUT=$(mktemp -d /tmp/sluice-cps.XXXXXX)
R=target/release
SRC_IPS=$(for i in $(seq 0 $((SOURCES - 1))); do echo 10.70.1.$((100 + i)); done)
BACKEND_IPS=$(for i in $(seq 0 $((BACKENDS - 1))); do echo 10.70.2.$((2 + i)); done)

CT_MAX_BEFORE=
cleanup() {
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null || true; done
  bench/peers/topo.sh down || true
  [ -z "$CT_MAX_BEFORE" ] || echo "$CT_MAX_BEFORE" > /proc/sys/net/netfilter/nf_conntrack_max || true
  if [ -n "${KEEP:-}" ]; then echo "logs kept in $OUT" >&2; else rm -rf "$OUT"; fi
}
trap cleanup EXIT

echo "==> building (release)" >&2
cargo build --release -q -p engine --bin sluice -p bench --bin cps-gen

mask() { printf %x $((1 << $1)); }

topo_up() {
  bench/peers/topo.sh up
  for ip in $SRC_IPS; do
    ip -n $GEN addr add "$ip/24" dev g0
    ip -n $DUT neigh replace "$ip" lladdr $G_MAC dev p0 nud permanent
  done
  for ip in $BACKEND_IPS; do
    [ "$ip" = 10.70.2.2 ] || ip -n $SINK addr add "$ip/24" dev k0
    ip -n $DUT neigh replace "$ip" lladdr $K_MAC dev p1 nud permanent
  done
  ip -n $GEN neigh replace 10.70.1.1 lladdr $P0_MAC dev g0 nud permanent
  ip -n $SINK neigh replace 10.70.2.1 lladdr $P1_MAC dev k0 nud permanent
  ip -n $GEN route replace $VIP/32 via 10.70.1.1
  ip -n $GEN route replace 10.70.2.0/24 via 10.70.1.1
  # Receive work on the right core (see the header).
  ip netns exec $GEN sh -c "echo $(mask "$GEN_CORE") > /sys/class/net/g0/queues/rx-0/rps_cpus"
  ip netns exec $SINK sh -c "echo $(mask "$GEN_CORE") > /sys/class/net/k0/queues/rx-0/rps_cpus"
  for d in p0 p1; do
    ip netns exec $DUT sh -c "echo $(mask "$DUT_CORE") > /sys/class/net/$d/queues/rx-0/rps_cpus"
  done
}

pin_napi() { # NAPI threads of the DUT's ports (veth has NAPI once XDP is attached)
  for d in p0 p1; do
    ip netns exec $DUT sh -c "echo 1 > /sys/class/net/$d/threaded" || die "sluice: threaded NAPI on $d"
  done
  local t names=
  for t in $(pgrep "napi/p[01]-" || true); do
    taskset -pc "$DUT_CORE" "$t" >/dev/null
    names="$names $(cat /proc/$t/comm)"
  done
  [ -n "$names" ] || die "sluice: no NAPI threads for p0/p1 to pin"
  echo "              NAPI threads on core $DUT_CORE:$names" >&2
}

cpu_sample() { # core -> "busy total" jiffies: busy = user nice system irq softirq;
  # total = those + idle iowait steal (guest time is already in user)
  awk -v c="cpu$1" '$1 == c {b = $2 + $3 + $4 + $7 + $8; print b, b + $5 + $6 + $9}' /proc/stat
}

# The policy and its filter-chain twin: RULES denies, then the allow.
write_policy() {
  mkdir -p "$OUT/policy"
  {
    for ip in $BACKEND_IPS; do
      printf 'apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: backend-%s, namespace: bench, labels: {app: web}}\nspec: {ipNetworks: ["%s/32"]}\n---\n' "${ip##*.}" "$ip"
    done
    printf 'apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: web, namespace: bench}\nspec:\n  selector: app == '"'web'"'\n  types: [Ingress]\n  ingress:\n'
    for i in $(seq 0 $((RULES - 1))); do
      printf '    - {action: Deny, protocol: TCP, source: {nets: ["172.16.%d.%d/32"]}, destination: {ports: [8080]}}\n' $((i >> 8 & 255)) $((i & 255))
    done
    printf '    - {action: Allow, protocol: TCP, source: {nets: ["10.70.1.0/24"]}, destination: {ports: [8080]}}\n'
  } > "$OUT/policy/web.yaml"
}

write_nft() { # nat: 1 with the service and masquerade
  local nat=$1 i=0
  {
    echo "table ip sluice_cps {"
    echo "  set backends { type ipv4_addr; elements = { $(echo $BACKEND_IPS | tr ' ' ',') } }"
    if [ "$nat" = 1 ]; then
      echo "  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; elements = { $VIP . tcp . 80 : goto svc-web } }"
      echo "  chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; ip daddr . meta l4proto . th dport vmap @service-ips; }"
      printf "  chain svc-web { numgen random mod %d vmap { " "$BACKENDS"
      i=0; for ip in $BACKEND_IPS; do [ $i = 0 ] || printf ", "; printf "%d : goto ep-%d" $i $i; i=$((i + 1)); done
      echo " }; }"
      i=0; for ip in $BACKEND_IPS; do echo "  chain ep-$i { meta l4proto tcp dnat to $ip:8080; }"; i=$((i + 1)); done
      echo "  chain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; oifname \"p1\" ip saddr 10.70.1.0/24 masquerade; }"
    fi
    echo "  chain filter-forward {"
    echo "    type filter hook forward priority filter; policy drop;"
    echo "    ct state established,related accept"
    echo "    ct state invalid drop"
    for i in $(seq 0 $((RULES - 1))); do
      echo "    ip saddr 172.16.$((i >> 8 & 255)).$((i & 255)) ip daddr @backends tcp dport 8080 drop"
    done
    echo "    ip saddr 10.70.1.0/24 ip daddr @backends tcp dport 8080 accept"
    echo "  }"
    echo "}"
  } > "$OUT/ruleset.nft"
}

write_sluice_config() { # nat
  local nat=$1
  {
    cat <<EOF
ports:
  - {name: gen, interface: p0, addresses: ["10.70.1.1/24"]}
  - {name: sink, interface: p1, addresses: ["10.70.2.1/24"]}
workers: {cores: [$DUT_CORE], batch: ${BATCH:-64}, busy_poll: ${BUSY_POLL:-false}}
policy: {paths: ["$OUT/policy"]}
conntrack: {max_entries: 1048576}
routes:
  - {prefix: "10.70.1.0/24", port: gen}
  - {prefix: "10.70.2.0/24", port: sink}
neighbors:
  - {ip: "10.70.1.2", mac: "$G_MAC", port: gen}
EOF
    for ip in $SRC_IPS; do echo "  - {ip: \"$ip\", mac: \"$G_MAC\", port: gen}"; done
    for ip in $BACKEND_IPS; do echo "  - {ip: \"$ip\", mac: \"$K_MAC\", port: sink}"; done
    if [ "$nat" = 1 ]; then
      echo "services:"
      printf '  - {name: web, vip: "%s", port: 80, protocol: TCP, affinity: none, backends: [%s]}\n' \
        "$VIP" "$(for ip in $BACKEND_IPS; do printf '"%s:8080",' "$ip"; done | sed 's/,$//')"
      echo "masquerade:"
      echo '  - {from: "10.70.1.0/24", port: sink, address: "10.70.2.1"}'
    fi
    cat <<EOF
metrics: {listen: null}
control: {socket: "$OUT/control.sock"}
EOF
  } > "$OUT/sluice.yaml"
}

dut_us() { # client.json dut_busy -> DUT core microseconds per completed connection
  python3 -c "import json,sys; c = json.load(open(sys.argv[1]))['cps']; print(f'{float(sys.argv[2]) * 1e6 / c:.1f}' if c > 0 else '-')" "$1" "$2"
}

jget() { python3 -c "import json,sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split('.'): v = v[k]
print(v)" "$1" "$2"; }

load() { # name target nat: the DUT is forwarding
  local name=$1 target=$2
  taskset -c "$GEN_CORE" $R/cps-gen server --netns $SINK --listen 0.0.0.0:8080 \
    --seconds "$((WARMUP + SECONDS_RUN + 1))" > "$OUT/$name.server.json" 2> "$OUT/$name.server.err" &
  local srv=$!
  sleep 0.3
  kill -0 $srv 2>/dev/null || { cat "$OUT/$name.server.err" >&2; die "$name: the cps-gen server did not start"; }
  taskset -c "$GEN_CORE" $R/cps-gen client --netns $GEN --target "$target" \
    --sources 10.70.1.100 --source-count "$SOURCES" --concurrency "$CONCURRENCY" \
    --warmup "$WARMUP" --seconds "$SECONDS_RUN" --timeout-ms "$TIMEOUT_MS" \
    > "$OUT/$name.client.json" 2> "$OUT/$name.client.err" &
  local cli=$!
  sleep "$WARMUP"
  local g0 d0 g1 d1
  g0=$(cpu_sample "$GEN_CORE"); d0=$(cpu_sample "$DUT_CORE")
  sleep "$SECONDS_RUN"
  g1=$(cpu_sample "$GEN_CORE"); d1=$(cpu_sample "$DUT_CORE")
  wait $cli || { cat "$OUT/$name.client.err" >&2; die "$name: the cps-gen client failed"; }
  # The server prints what it saw at the end of its --seconds.
  wait $srv || { cat "$OUT/$name.server.err" >&2; die "$name: the cps-gen server failed"; }
  busy() { python3 -c "import sys; b0, t0, b1, t1 = map(int, sys.argv[1:]); print(f'{(b1 - b0) / max(t1 - t0, 1):.2f}')" $1 $2 $3 $4; }
  GEN_BUSY=$(busy $g0 $g1); DUT_BUSY=$(busy $d0 $d1)
  local j=$OUT/$name.client.json completed failed
  completed=$(jget "$j" completed); failed=$(jget "$j" failed)
  printf "%-13s %9.0f conn/s, %d completed, %d failed %s; setup p50/p99 %s/%s us; exchange p50/p99 %s/%s us; busy: generator core %s, DUT core %s\n" \
    "$name" "$(jget "$j" cps)" "$completed" "$failed" "$(python3 -c "import json,sys; f = json.load(open(sys.argv[1]))['failures']; print({k: v for k, v in f.items() if v})" "$j")" \
    "$(jget "$j" setup_us.p50)" "$(jget "$j" setup_us.p99)" "$(jget "$j" exchange_us.p50)" "$(jget "$j" exchange_us.p99)" \
    "$GEN_BUSY" "$DUT_BUSY" >&2
  [ "$(jget "$j" pairs_used)" -le "$(jget "$j" pairs)" ] \
    || echo "              $name: warning: the client's source (address, port) pairs wrapped: 4-tuples repeated (raise SOURCES)" >&2
  # Behind the NAT every connection comes from the masquerade address;
  # without, from the client's own (the sink routes 10.70.1.0/24 back
  # through the DUT only then, so a missing masquerade cannot go unseen).
  python3 -c "import json, sys
peers = json.load(open(sys.argv[1]))['peers']
nat = sys.argv[2] == '1'
bad = {a: n for a, n in peers.items() if (a != '10.70.2.1' if nat else not a.startswith('10.70.1.'))}
if bad:
    print(f'server saw {peers}; expected only ' + ('10.70.2.1 (masquerade)' if nat else '10.70.1.x'), file=sys.stderr)
    sys.exit(1)" "$OUT/$name.server.json" "$3" || die "$name: the server saw connections from the wrong addresses (see above)"
  [ "$completed" -gt 0 ] || die "$name: completed no connection in ${SECONDS_RUN}s ($failed failed: $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['failures'])" "$j"))"
}

run_sluice() { # name nat target
  local name=$1 nat=$2 target=$3
  write_sluice_config "$nat"
  rm -f "$OUT/ready"
  $R/sluice run --config "$OUT/sluice.yaml" --netns $DUT --ready-file "$OUT/ready" --json \
    > "$OUT/$name.report.json" 2> "$OUT/$name.err" &
  local pid=$!
  for _ in $(seq 200); do [ -f "$OUT/ready" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
  [ -f "$OUT/ready" ] || { tail -5 "$OUT/$name.err" >&2; die "$name: sluice did not start (see above)"; }
  pin_napi
  load "$name" "$target" "$nat"
  kill -INT $pid; wait $pid || true
  python3 - "$OUT/$name.report.json" "$name" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
d = {k: v for k, v in r["drops"].items() if v}
print(f"              {sys.argv[2]}: rx {r['rx']} tx {r['tx']} drops {d}", file=sys.stderr)
EOF
}

run_kernel() { # name nat target
  local name=$1 nat=$2 target=$3
  write_nft "$nat"
  ip netns exec $DUT nft -f "$OUT/ruleset.nft" || die "$name: nft -f ruleset.nft failed"
  load "$name" "$target" "$nat"
  echo "              $name: conntrack entries at the end: $(ip netns exec $DUT cat /proc/sys/net/netfilter/nf_conntrack_count)" >&2
  ip netns exec $DUT nft delete table ip sluice_cps
}

CT_NOW=$(cat /proc/sys/net/netfilter/nf_conntrack_max 2>/dev/null || echo 0)
if [ "$CT_NOW" -lt 1048576 ]; then
  modprobe nf_conntrack 2>/dev/null || true
  [ -w /proc/sys/net/netfilter/nf_conntrack_max ] || die "kernel: /proc/sys/net/netfilter/nf_conntrack_max not writable"
  CT_MAX_BEFORE=$CT_NOW
  echo 1048576 > /proc/sys/net/netfilter/nf_conntrack_max
fi
write_policy
declare -A GB DB
declare -A LABEL=([sluice]="sluice (VIP + masquerade)" [kernel]="kernel conntrack + nftables (VIP + masquerade)"
  [sluice-plain]="sluice (no NAT)" [kernel-plain]="kernel conntrack + nftables (no NAT)")
for p in "${PEERS[@]}"; do
  echo "==> $p" >&2
  # A fresh topology per peer: no conntrack or TIME_WAIT state carried over.
  topo_up
  case $p in *-plain) ip -n $SINK route replace 10.70.1.0/24 via 10.70.2.1 ;; esac
  case $p in
    sluice) run_sluice "$p" 1 $VIP:80 ;;
    kernel) run_kernel "$p" 1 $VIP:80 ;;
    sluice-plain) run_sluice "$p" 0 10.70.2.2:8080 ;;
    kernel-plain) run_kernel "$p" 0 10.70.2.2:8080 ;;
  esac
  j=$OUT/$p.client.json
  GB[$p]=$GEN_BUSY DB[$p]=$DUT_BUSY
  echo "result $p cps $(jget "$j" cps) completed $(jget "$j" completed) failed $(jget "$j" failed) setup_p50_us $(jget "$j" setup_us.p50) setup_p99_us $(jget "$j" setup_us.p99) exchange_p50_us $(jget "$j" exchange_us.p50) exchange_p99_us $(jget "$j" exchange_us.p99) gen_busy $GEN_BUSY dut_busy $DUT_BUSY dut_us_per_conn $(dut_us "$j" "$DUT_BUSY")"
done

echo
printf "TCP connection setup rate, %s in flight, %ss after %ss warmup; %s client addresses, %s backends, %s policy rules; generator core %s, DUT core %s\n" \
  "$CONCURRENCY" "$SECONDS_RUN" "$WARMUP" "$SOURCES" "$BACKENDS" "$((RULES + 1))" "$GEN_CORE" "$DUT_CORE"
printf "  %-48s %9s %7s %14s %14s %10s %11s\n" peer conn/s failed "setup p50/p99" "exch. p50/p99" "busy g/d" "DUT us/conn"
for p in "${PEERS[@]}"; do
  j=$OUT/$p.client.json
  printf "  %-48s %9.0f %7d %14s %14s %10s %11s\n" "${LABEL[$p]}" "$(jget "$j" cps)" "$(jget "$j" failed)" \
    "$(jget "$j" setup_us.p50)/$(jget "$j" setup_us.p99)us" "$(jget "$j" exchange_us.p50)/$(jget "$j" exchange_us.p99)us" \
    "${GB[$p]}/${DB[$p]}" "$(dut_us "$j" "${DB[$p]}")"
done
for pair in "sluice kernel" "sluice-plain kernel-plain"; do
  set -- $pair
  [ -f "$OUT/$1.client.json" ] && [ -f "$OUT/$2.client.json" ] || continue
  python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'  {sys.argv[3]} / {sys.argv[4]}: {a / b:.2f}x' if b > 0 else 'n/a')" \
    "$(jget "$OUT/$1.client.json" cps)" "$(jget "$OUT/$2.client.json" cps)" "$1" "$2"
done
