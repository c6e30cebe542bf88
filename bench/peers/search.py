#!/usr/bin/env python3
"""Loss-free rates of one forwarder, in the manner of FD.io CSIT's MLRsearch.

For each loss target (NDR: loss <= 0.1%, PDR: <= 0.5%) it keeps an interval:
the highest offered rate seen to pass and the lowest seen to fail. Phase 1
narrows both intervals with short trials (SHORT seconds), starting from the
top rate and then from what the forwarder delivered there (the MRR guess),
then by halving, until each is within WIDTH (relative) of its upper bound.
Phase 2 confirms each lower bound with REPEAT full-length trials (TRIAL
seconds): a rate that fails any of them becomes the upper bound and the
search goes on below it with full-length trials. A reported NDR therefore
passed REPEAT full-length trials, and a rate at most WIDTH above it failed.

Then the overload trials (outside the trial budget): offered at each
factor of OVERLOAD times the forwarder's own NDR, one full-length trial
each, reporting what it delivered.

Each trial is `trial.sh NAME RATE SECONDS` (the paced XDP generator). A
trial whose generator offered less than 95% of the asked rate counts at the
rate it did offer, and no later trial asks for more. A figure with no
failing rate above it is bounded by the generator, not the forwarder: it
is reported as a lower bound (`capped`).

Prints, on stdout, one line:
  ndr PPS pdr PPS capped 0|1 overload F:PPS,F:PPS trials N
and writes every trial to --json.
"""
import argparse
import json
import os
import subprocess
import sys

p = argparse.ArgumentParser()
p.add_argument("--name", required=True)
p.add_argument("--top", type=float, required=True, help="highest rate tried (pps)")
p.add_argument("--ndr-loss", type=float, default=0.001)
p.add_argument("--pdr-loss", type=float, default=0.005)
p.add_argument("--short", type=float, default=1.0)
p.add_argument("--trial", type=float, default=5.0)
p.add_argument("--repeat", type=int, default=2)
p.add_argument("--width", type=float, default=0.02)
p.add_argument("--max-trials", type=int, default=30)
p.add_argument("--overload", default="2,5")
p.add_argument("--json", required=True)
p.add_argument("--trial-cmd", help="the trial command (default: trial.sh beside this file)")
a = p.parse_args()

here = os.path.dirname(os.path.abspath(__file__))
trials = []


class Capped(Exception):
    pass


def trial(rate, secs, budget=True):
    if budget and len(trials) >= a.max_trials:
        raise Capped("trial budget spent")
    r = subprocess.run([a.trial_cmd or os.path.join(here, "trial.sh"), a.name, str(int(rate)), str(secs)],
                       stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"search.py: error: {a.name}: trial at {int(rate)} pps failed (see above)")
    out = r.stdout.split()
    f = dict(zip(out[::2], map(float, out[1::2])))
    asked = int(rate)
    short = f["offered"] < 0.95 * asked
    rate = int(f["offered"]) if short else asked
    t = {"rate": rate, "asked": asked, "seconds": secs, **f}
    trials.append(t)
    print(f"         trial {asked:9d} pps {secs:.0f}s: loss {f['loss']:.5f}, "
          f"delivered {f['delivered'] / 1e6:.3f} Mpps"
          + (f" (the generator offered only {rate} pps)" if short else ""), file=sys.stderr)
    return f


def bounds(loss):
    """(highest rate that passed and lies below every failure, lowest rate
    that failed or None); a rate with any failed trial counts as failed."""
    fails = {t["rate"] for t in trials if t["loss"] > loss}
    hi = min(fails) if fails else None
    ok = [t["rate"] for t in trials
          if t["loss"] <= loss and t["rate"] not in fails and (hi is None or t["rate"] < hi)]
    return (max(ok) if ok else 0), hi


def gen_cap():
    """The lowest rate the generator fell short of asking (or None)."""
    caps = [t["rate"] for t in trials if t["rate"] < t["asked"]]
    return min(caps) if caps else None


def narrow(loss, secs):
    """Halves the interval for `loss` with trials of `secs` until it is
    within WIDTH of its upper bound."""
    while True:
        lo, hi = bounds(loss)
        if hi is None or hi - lo <= a.width * hi or hi < 1000:
            return
        trial((lo + hi) / 2, secs)
        if trials[-1]["rate"] < trials[-1]["asked"]:
            return  # the generator cannot offer more: nothing to narrow


def confirm(loss):
    """Full-length trials at the lower bound, REPEAT passes, going down
    (narrowing again with full-length trials) while one fails."""
    while True:
        narrow(loss, a.trial)
        lo, _ = bounds(loss)
        if lo <= 0:
            return
        full = [t for t in trials if t["rate"] == lo and t["seconds"] >= a.trial]
        if len(full) >= a.repeat:
            return
        trial(lo, a.trial)


capped = False
overload = {}
try:
    # Phase 1: short trials, from the top and then from what the forwarder
    # delivered there.
    f = trial(a.top, a.short)
    guess = min(f["delivered"] * 0.99, f["offered"])
    for loss in (a.ndr_loss, a.pdr_loss):
        lo, hi = bounds(loss)
        if hi is not None and lo < guess < hi:
            trial(guess, a.short)
        narrow(loss, a.short)
    # Phase 2: full-length trials confirm each lower bound.
    confirm(a.pdr_loss)
    confirm(a.ndr_loss)
except Capped as e:
    capped = True
    print(f"         search stopped: {e}; figures are lower bounds", file=sys.stderr)

# Overload: offered at multiples of the NDR found (outside the budget).
ndr_now = bounds(a.ndr_loss)[0]
for k in [float(x) for x in a.overload.split(",") if x]:
    if ndr_now <= 0:
        break
    overload[k] = trial(k * ndr_now, a.trial, budget=False)["delivered"]

(ndr, ndr_hi), (pdr, pdr_hi) = bounds(a.ndr_loss), bounds(a.pdr_loss)
if gen_cap() is not None and (ndr_hi is None or pdr_hi is None):
    capped = True
    print(f"         no failing rate up to what the generator could offer "
          f"({gen_cap()} pps): figures are lower bounds", file=sys.stderr)
json.dump({"name": a.name, "trials": trials, "ndr": ndr, "pdr": pdr,
           "capped": capped, "overload": overload}, open(a.json, "w"), indent=1)
ol = ",".join(f"{k:g}:{v:.0f}" for k, v in overload.items()) or "-"
print(f"ndr {ndr:.0f} pdr {pdr:.0f} capped {int(capped)} overload {ol} trials {len(trials)}")
