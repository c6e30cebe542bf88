#!/usr/bin/env bash
# One paced trial through the forwarder that run.sh has running: the XDP
# generator offers RATE packets/s for SECONDS from the generator namespace,
# the sink counts what arrives (from before the first frame to a second after
# the last), and one line is printed:
#   loss RATIO offered PPS delivered PPS
# (loss = 1 - delivered / sent). Called by search.py, with run.sh's
# environment (OUT, R, GEN, SINK, P0_MAC, FLOWS, GEN_CORE).
# Usage: trial.sh NAME RATE SECONDS
set -euo pipefail
name=$1 rate=$2 secs=$3
n=$(date +%s%N)
sink_json=$OUT/$name.trial.$n.sink.json gen_json=$OUT/$name.trial.$n.gen.json
taskset -c "$GEN_CORE" "$R/peer-gen" sink --netns "$GEN_SINK_NS" --interface k0 \
  --warmup 0 --seconds "$(python3 -c "print($secs + 1.0)")" > "$sink_json" &
sink=$!
sleep 0.3
if ! taskset -c "$GEN_CORE" "$R/peer-gen" tx --netns "$GEN_NS" --interface g0 --dst-mac "$P0_MAC" \
  --hold-interface gh0 --src-ip 10.70.1.2 --dst-ip 10.70.2.2 --flows "$FLOWS" \
  --seconds "$secs" --rate "$rate" --call "${TRIAL_CALL:-64}" --engine xdp > "$gen_json"; then
  kill "$sink" 2>/dev/null || true
  echo "trial.sh: error: $name: the paced generator failed at $rate pps" >&2
  exit 1
fi
wait "$sink" || { echo "trial.sh: error: $name: the sink failed" >&2; exit 1; }
python3 - "$sink_json" "$gen_json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))["delivered"]
g = json.load(open(sys.argv[2]))
sent, secs = g["sent"], g["seconds"]
loss = max(0.0, 1 - s / sent) if sent else 1.0
print(f"loss {loss:.6f} offered {sent / secs:.0f} delivered {s / secs:.0f}")
EOF
rm -f "$sink_json" "$gen_json"
