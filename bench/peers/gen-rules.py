#!/usr/bin/env python3
"""One rule list, two forms: a Calico policy for sluice and its nftables twin
for the kernel peer (bench/peers/run.sh).

Rule i denies UDP from 172.16.(i>>8).(i&255) to destination port
10000 + i % 1000; a final rule allows everything else. The benchmark traffic
(10.70.1.2 -> 10.70.2.2, UDP port 9) matches none of the deny rules, so a
linear evaluator walks them all before the allow: the worst case.

nftables forms: --nft-match linear (one rule per entry, like the policy) or
set (one concatenated-set lookup); --nft-ct per-connection (the verdict is
cached in the conntrack mark, as sluice classifies once per connection) or
per-packet (every packet walks the rules: one-way UDP stays ct state new).
"""
import argparse
import os

ap = argparse.ArgumentParser()
ap.add_argument("--rules", type=int, default=1000)
ap.add_argument("--out", required=True)
ap.add_argument("--nft-ct", choices=["per-connection", "per-packet"], default="per-connection")
ap.add_argument("--nft-match", choices=["linear", "set"], default="linear")
a = ap.parse_args()

rules = [(f"172.16.{(i >> 8) & 255}.{i & 255}", 10000 + i % 1000) for i in range(a.rules)]

os.makedirs(os.path.join(a.out, "policy"), exist_ok=True)
with open(os.path.join(a.out, "policy", "bench.yaml"), "w") as f:
    f.write("""apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: sink, namespace: bench}
spec: {ipNetworks: ["10.70.2.2/32"]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: bench-rules}
spec:
  selector: all()
  types: [Ingress]
  ingress:
""")
    for src, port in rules:
        f.write(f"    - {{action: Deny, protocol: UDP, source: {{nets: [\"{src}/32\"]}}, "
                f"destination: {{ports: [{port}]}}}}\n")
    f.write("    - {action: Allow}\n")

with open(os.path.join(a.out, "ruleset.nft"), "w") as f:
    f.write("table inet sluice_bench {\n")
    if a.nft_match == "set" and rules:
        f.write("  set deny {\n    type ipv4_addr . inet_service\n    elements = { ")
        f.write(", ".join(f"{s} . {p}" for s, p in rules))
        f.write(" }\n  }\n")
    f.write("  chain forward {\n    type filter hook forward priority filter; policy accept;\n")
    if a.nft_ct == "per-connection":
        f.write("    ct mark 0x1 accept\n")
    if a.nft_match == "set":
        if rules:
            f.write("    ip daddr 10.70.2.2 ip saddr . udp dport @deny drop\n")
    else:
        for s, p in rules:
            f.write(f"    ip daddr 10.70.2.2 ip saddr {s} udp dport {p} drop\n")
    if a.nft_ct == "per-connection":
        f.write("    ct mark set 0x1 accept\n")
    else:
        f.write("    accept\n")
    f.write("  }\n}\n")
