#!/usr/bin/env python3
"""Tallies the own-data check from a simulated network's event logs (docs/NODES.md).

Replays every validator's own-data evidence (`OwnDataEvidence`: llr <- clamp(llr + d^2/2 - d*z,
+-cap) from window `--from` on) from the `own_z` of its evaluations, and counts the honest
miners' evaluations the check leaves unpaid and the wrong-data miners' it pays.

    covenant simulate --network --model tiny --miners 4 --validators 2 --inner-steps 30 \
        --step-ms 200 --windows 20 --adversaries wrong-data --seed S --events DIR
    scripts/own-data-tally.py DIR [DIR ...]      # the adversary is miner-5 (--wrong NAME)
"""
import argparse
import glob
import json
import os


def started_uid(path):
    with open(path) as f:
        for line in f:
            e = json.loads(line)
            if e["event"] == "started":
                return e["uid"]
    return None


def tally(run, wrong_names, a):
    uids = {p.split("/")[-2]: started_uid(p) for p in glob.glob(f"{run}/*/events.jsonl")}
    wrong = {uids[n] for n in wrong_names if n in uids}
    t = {"honest": 0, "honest_unpaid": 0, "wrong": 0, "wrong_paid": 0, "unpaid": []}
    for v in sorted(glob.glob(f"{run}/validator-*/events.jsonl")):
        llr = {}
        with open(v) as f:
            for line in f:
                e = json.loads(line)
                if e["event"] != "report" or e["window"] < a.from_window:
                    continue
                for u, probe in e["eval"].items():
                    z = probe.get("own_z")
                    if z is None:
                        continue
                    u = int(u)
                    x = llr.get(u, 0.0) + a.delta**2 / 2 - a.delta * z
                    llr[u] = max(-a.cap, min(a.cap, x))
                    paid = llr[u] <= -a.margin
                    if u in wrong:
                        t["wrong"] += 1
                        t["wrong_paid"] += paid
                    else:
                        t["honest"] += 1
                        if not paid:
                            t["honest_unpaid"] += 1
                            t["unpaid"].append((v.split("/")[-2], e["window"], u, round(z, 2)))
    return t


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="--events directories of simulated runs")
    p.add_argument("--wrong", action="append", help="wrong-data miners' names (miner-5)")
    p.add_argument("--from-window", type=int, default=6, help="own_data_from_window (6)")
    p.add_argument("--delta", type=float, default=2.0, help="own_data_effect (2)")
    p.add_argument("--margin", type=float, default=2.0, help="own_data_margin (2)")
    p.add_argument("--cap", type=float, default=8.0, help="OWN_DATA_LLR_CAP (8)")
    a = p.parse_args()
    total = {"honest": 0, "honest_unpaid": 0, "wrong": 0, "wrong_paid": 0}
    for run in a.runs:
        t = tally(run, a.wrong or ["miner-5"], a)
        for k in total:
            total[k] += t[k]
        print(f"{os.path.basename(run.rstrip('/'))}: honest unpaid by the check "
              f"{t['honest_unpaid']} of {t['honest']}, wrong-data paid {t['wrong_paid']} of "
              f"{t['wrong']}; unpaid (validator, window, uid, z): {t['unpaid']}")
    if len(a.runs) > 1:
        print(f"all: honest unpaid {total['honest_unpaid']} of {total['honest']}, "
              f"wrong-data paid {total['wrong_paid']} of {total['wrong']}")


if __name__ == "__main__":
    main()
