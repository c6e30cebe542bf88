#!/usr/bin/env bash
# The peer-comparison topology (created with `up`, removed with `down`):
#
#   gen ns            dut ns (device under test)            sink ns
#   g0 10.70.1.2 ── p0 10.70.1.1 | p1 10.70.2.1 ── k0 10.70.2.2
#
# The generator sends from g0 to 10.70.2.2 with p0's MAC as destination;
# the DUT (sluice, testpmd or the kernel) forwards out of p1; the sink drops
# and counts at XDP. Names are prefixed with $PEER_PREFIX (default "pr").
set -euo pipefail
P=${PEER_PREFIX:-pr}
GEN=${P}gen DUT=${P}dut SINK=${P}sink
G_MAC=02:00:00:70:01:02 P0_MAC=02:00:00:70:01:01 P1_MAC=02:00:00:70:02:01 K_MAC=02:00:00:70:02:02
case "${1:-}" in
  up)
    "$0" down 2>/dev/null || true
    for n in $GEN $DUT $SINK; do ip netns add $n; ip -n $n link set lo up; done
    ip link add g0 netns $GEN address $G_MAC type veth peer name p0 netns $DUT address $P0_MAC
    ip link add k0 netns $SINK address $K_MAC type veth peer name p1 netns $DUT address $P1_MAC
    ip -n $GEN addr add 10.70.1.2/24 dev g0; ip -n $GEN link set g0 up
    # gh0 stays down: the XDP generator is attached there so that its
    # BPF_PROG_RUN calls cost microseconds (peer-gen tx --hold-interface).
    ip -n $GEN link add gh0 type veth peer name gh1
    ip -n $SINK addr add 10.70.2.2/24 dev k0; ip -n $SINK link set k0 up
    ip -n $DUT addr add 10.70.1.1/24 dev p0; ip -n $DUT link set p0 up
    ip -n $DUT addr add 10.70.2.1/24 dev p1; ip -n $DUT link set p1 up
    # Offloads stay at the kernel's defaults, as on a pod's veth (sluice
    # completes the partial checksums a veth hands XDP).
    # Kernel forwarding (used by the kernel peer only; the others take the
    # frames at XDP before the stack sees them).
    ip netns exec $DUT sysctl -qw net.ipv4.ip_forward=1
    ip -n $DUT neigh replace 10.70.2.2 lladdr $K_MAC dev p1 nud permanent
    ip -n $DUT neigh replace 10.70.1.2 lladdr $G_MAC dev p0 nud permanent
    ;;
  down)
    for n in $GEN $DUT $SINK; do
      for pid in $(ip netns pids $n 2>/dev/null); do kill -9 $pid 2>/dev/null || true; done
      ip netns del $n 2>/dev/null || true
    done
    ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
