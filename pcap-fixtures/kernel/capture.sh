#!/usr/bin/env bash
# Captures real sessions forwarded by the Linux kernel acting as the node:
# a router namespace with ip_forward and nftables dnat (two services) and
# masquerade, between a client namespace ("outside", on the uplink) and a
# backend namespace ("pods"). tcpdump records the router's input and output
# on both interfaces (-Q in / -Q out, static neighbours so there is no
# ARP). The veths keep the kernel's default offloads, as a pod's do, so
# TCP/UDP checksums are recorded partial (the sum a device completes on the
# wire): complete them (`wire::build::fix_checksums`, as
# tests/kernel_reference.rs does) before replay and comparison. sluice
# replays the inputs with the equivalent config (sluice.yaml here) and must
# produce the outputs byte for byte.
#
# Usage: capture.sh OUTDIR [TAG]   (root; TAG keeps names unique, default $$)
# Writes OUTDIR/{uplink,pods}-{in,out}.pcap. Removes everything it created,
# also on failure or interrupt.
set -euo pipefail
out=$(realpath -m "${1:?usage: capture.sh OUTDIR [TAG]}")
tag=${2:-$$}
tag=${tag:0:6}
mkdir -p "$out"

C=skc$tag R=skr$tag S=sks$tag            # namespaces: client, router, server
UP=up$tag PODS=pd$tag                    # router interfaces
CE=ce$tag SE=se$tag                      # client and server interfaces
pids=()      # servers
caps=()      # tcpdumps

cleanup() {
  for p in "${caps[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for n in "$C" "$R" "$S"; do ip netns del "$n" 2>/dev/null || true; done
  ip link del "$UP" 2>/dev/null || true
  ip link del "$PODS" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

ip netns add "$C"; ip netns add "$R"; ip netns add "$S"
ip link add "$UP" netns "$R" type veth peer name "$CE" netns "$C"
ip link add "$PODS" netns "$R" type veth peer name "$SE" netns "$S"

rx() { ip netns exec "$R" "$@"; }
cx() { ip netns exec "$C" "$@"; }
sx() { ip netns exec "$S" "$@"; }

for ns in "$C" "$R" "$S"; do
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
done

rx ip link set "$UP" address 02:00:00:00:00:01 up
rx ip link set "$PODS" address 02:00:00:00:00:02 up
cx ip link set "$CE" address 02:00:00:00:00:fe up
sx ip link set "$SE" address 02:00:00:01:00:05 up

rx ip addr add 192.0.2.1/24 dev "$UP"
rx ip addr add 10.1.0.1/16 dev "$PODS"
cx ip addr add 192.0.2.100/24 dev "$CE"
sx ip addr add 10.1.0.5/16 dev "$SE"
cx ip route add 10.0.0.0/8 via 192.0.2.1
sx ip route add default via 10.1.0.1
rx sysctl -qw net.ipv4.ip_forward=1
rx sysctl -qw net.ipv4.conf.all.send_redirects=0
rx sysctl -qw net.ipv4.conf.all.rp_filter=0

# Static neighbours everywhere: no ARP in the captures.
rx ip neigh replace 192.0.2.100 lladdr 02:00:00:00:00:fe dev "$UP" nud permanent
rx ip neigh replace 10.1.0.5 lladdr 02:00:00:01:00:05 dev "$PODS" nud permanent
cx ip neigh replace 192.0.2.1 lladdr 02:00:00:00:00:01 dev "$CE" nud permanent
sx ip neigh replace 10.1.0.1 lladdr 02:00:00:00:00:02 dev "$SE" nud permanent

rx nft -f - <<NFT
table ip nat {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 10.96.0.10 tcp dport 80 dnat to 10.1.0.5:8080
    ip daddr 10.96.0.10 udp dport 53 dnat to 10.1.0.5:5353
    ip daddr 10.96.0.11 tcp dport 80 dnat to 10.1.0.5:9999
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "$UP" ip saddr 10.1.0.0/16 masquerade
  }
}
NFT

# Servers: HTTP and a UDP answerer on the backend, HTTP and UDP outside.
# (Started with `ip netns exec ... &` directly so $! is the server itself;
# TCPServer rather than http.server, which looks its own name up in DNS.)
http_server='import http.server as h, socketserver as s, sys
s.TCPServer.allow_reuse_address = True
s.TCPServer((sys.argv[1], int(sys.argv[2])), h.SimpleHTTPRequestHandler).serve_forever()'
udp_server='import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    d, a = s.recvfrom(2048); s.sendto(sys.argv[3].encode() + d, a)'
ip netns exec "$S" python3 -c "$http_server" 10.1.0.5 8080 >/dev/null 2>&1 & pids+=($!)
ip netns exec "$S" python3 -c "$udp_server" 10.1.0.5 5353 "answer:" >/dev/null 2>&1 & pids+=($!)
ip netns exec "$C" python3 -c "$http_server" 192.0.2.100 8000 >/dev/null 2>&1 & pids+=($!)
ip netns exec "$C" python3 -c "$udp_server" 192.0.2.100 5300 "pong:" >/dev/null 2>&1 & pids+=($!)

# Captures on the router, IPv4 only.
for dir in in out; do
  ip netns exec "$R" tcpdump -U -n -i "$UP" -Q "$dir" -w "$out/uplink-$dir.pcap" ip 2>"$out/.tcpdump-up-$dir.log" & caps+=($!)
  ip netns exec "$R" tcpdump -U -n -i "$PODS" -Q "$dir" -w "$out/pods-$dir.pcap" ip 2>"$out/.tcpdump-pods-$dir.log" & caps+=($!)
done
for i in $(seq 100); do
  n=$( { grep -l "listening on" "$out"/.tcpdump-*.log 2>/dev/null || true; } | wc -l)
  [ "$n" -eq 4 ] && break
  sleep 0.1
done
# Wait for the servers.
for i in $(seq 100); do
  sx bash -c 'exec 3<>/dev/tcp/10.1.0.5/8080' 2>/dev/null && cx bash -c 'exec 3<>/dev/tcp/192.0.2.100/8000' 2>/dev/null && break
  sleep 0.1
done
sleep 0.3
# The probes above crossed nothing (each in its own namespace); start clean.

udp() { # ns addr port message
  ip netns exec "$1" python3 -c "
import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(sys.argv[3].encode(),(sys.argv[1],int(sys.argv[2]))); print(s.recvfrom(2048)[0])" "$2" "$3" "$4"
}

# 1. Outside -> service VIP (DNAT), HTTP over TCP.
cx curl -s -o /dev/null --max-time 5 http://10.96.0.10/
# 2. Outside -> service VIP, DNS-like UDP.
udp "$C" 10.96.0.10 53 query-1 >/dev/null
# 3. Pod -> outside (masquerade), HTTP.
sx curl -s -o /dev/null --max-time 5 http://192.0.2.100:8000/
# 4. Pod -> outside, UDP.
udp "$S" 192.0.2.100 5300 ping-1 >/dev/null
# 5. Pod -> outside, ping (ICMP echo through masquerade).
sx ping -c 2 -i 0.2 -W 1 192.0.2.100 >/dev/null
# 6. Outside -> pod directly, ping (plain forwarding).
cx ping -c 2 -i 0.2 -W 1 10.1.0.5 >/dev/null
# 7. A refused connection: service whose backend port has no listener.
cx curl -s -o /dev/null --max-time 5 http://10.96.0.11/ || true

# Let tcpdump catch up (on a busy machine it lags behind): a last UDP
# exchange with a unique marker crosses the router both ways; wait until
# all four captures hold it.
marker="sluice-capture-end-$tag"
udp "$C" 10.1.0.5 5353 "$marker" >/dev/null
for i in $(seq 100); do
  n=0
  for f in "$out"/*.pcap; do grep -aq "$marker" "$f" && n=$((n + 1)); done
  [ "$n" -eq 4 ] && break
  sleep 0.1
done
[ "$n" -eq 4 ] || { echo "capture.sh: tcpdump did not record the end marker on all interfaces" >&2; exit 1; }
# tcpdump flushes its file on SIGTERM (background jobs of a script ignore
# SIGINT, so TERM everything).
for p in "${caps[@]}" "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for i in $(seq 50); do
  alive=0
  for p in "${caps[@]}" "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ "$alive" = 0 ] && break
  sleep 0.1
done
pids=()
caps=()
rm -f "$out"/.tcpdump-*.log
echo "captured into $out"
