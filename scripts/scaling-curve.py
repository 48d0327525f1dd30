#!/usr/bin/env python3
"""Reads the runs of scripts/scaling-curve.sh and writes, under docs/scaling/, the table
(curve.csv, printed as markdown) and the plot (curve.svg): validation loss against windows and
against tokens trained, one line per number of miners. Standard library only."""
import csv
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINERS = [2, 4, 8, 16]
FIXED_WINDOWS = 10
BUDGET = 64  # miner-windows
H, BATCH, SEQ = 10, 4, 128  # tiny's sequence length; the demo's batch
COLOURS = {2: "#1b9e77", 4: "#d95f02", 8: "#7570b3", 16: "#e7298a"}


def losses(run):
    with open(os.path.join(run, "windows.csv")) as f:
        rows = csv.DictReader(f)
        return {int(r["window"]): float(r["val_loss"]) for r in rows if r["val_loss"]}


def summary(run):
    with open(os.path.join(run, "summary.json")) as f:
        return json.load(f)


def utilisation(s):
    u = [v["utilisation"] for v in s.get("utilisation", {}).values()]
    return sum(u) / len(u) if u else float("nan")


def svg(curves, path):
    """Two panels: loss against the window, loss against tokens trained (millions)."""
    w, h, pad = 460, 320, 55
    ys = [v for c in curves.values() for v in c.values()]
    lo, hi = min(ys), max(ys)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h + 40}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{2 * w}" height="{h + 40}" fill="white"/>']
    tokens = lambda n, win: (win + 1) * n * H * BATCH * SEQ / 1e6
    panels = [("window", lambda n, win: win), ("tokens trained (millions)", tokens)]
    for p, (label, xf) in enumerate(panels):
        ox = p * w
        xs = [xf(n, win) for n, c in curves.items() for win in c]
        xmax = max(xs)
        sx = lambda x: ox + pad + (x / xmax) * (w - 2 * pad)
        sy = lambda y: h - pad + 20 - (y - lo) / (hi - lo) * (h - 2 * pad)
        out.append(f'<line x1="{ox + pad}" y1="{h - pad + 20}" x2="{ox + w - pad}" '
                   f'y2="{h - pad + 20}" stroke="black"/>')
        out.append(f'<line x1="{ox + pad}" y1="{sy(hi)}" x2="{ox + pad}" y2="{h - pad + 20}" '
                   'stroke="black"/>')
        for i in range(5):
            y = lo + (hi - lo) * i / 4
            out.append(f'<text x="{ox + pad - 6}" y="{sy(y) + 4}" text-anchor="end">{y:.2f}</text>')
            x = xmax * i / 4
            out.append(f'<text x="{sx(x)}" y="{h - pad + 36}" text-anchor="middle">{x:.0f}</text>')
        out.append(f'<text x="{ox + w / 2}" y="{h + 30}" text-anchor="middle">{label}</text>')
        out.append(f'<text x="{ox + 14}" y="{h / 2}" transform="rotate(-90 {ox + 14} {h / 2})" '
                   'text-anchor="middle">validation loss</text>')
        for n, c in curves.items():
            pts = " ".join(f"{sx(xf(n, win)):.1f},{sy(v):.1f}" for win, v in sorted(c.items()))
            out.append(f'<polyline fill="none" stroke="{COLOURS[n]}" stroke-width="2" points="{pts}"/>')
        for i, n in enumerate(curves):
            y = 24 + 16 * i
            out.append(f'<line x1="{ox + w - 150}" y1="{y}" x2="{ox + w - 130}" y2="{y}" '
                       f'stroke="{COLOURS[n]}" stroke-width="2"/>')
            out.append(f'<text x="{ox + w - 125}" y="{y + 4}">{n} miners</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "runs", "scaling")
    docs = os.path.join(ROOT, "docs", "scaling")
    os.makedirs(docs, exist_ok=True)
    curves, rows = {}, []
    for n in MINERS:
        run = os.path.join(out, f"miners-{n}")
        if not os.path.exists(os.path.join(run, "summary.json")):
            print(f"missing {run}", file=sys.stderr)
            continue
        c, s = losses(run), summary(run)
        curves[n] = c
        budget_window = BUDGET // n - 1
        rows.append({
            "miners": n,
            "loss_at_window_0": c.get(0),
            f"loss_after_{FIXED_WINDOWS}_windows": c.get(FIXED_WINDOWS - 1),
            f"loss_at_{BUDGET}_miner_windows": c.get(budget_window),
            "budget_window": budget_window,
            "utilisation": round(utilisation(s), 3),
            "replicas_agree": s.get("replicas_agree"),
        })
    with open(os.path.join(docs, "curve.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    svg(curves, os.path.join(docs, "curve.svg"))
    print("| miners | loss after window 0 | after 10 windows | at 64 miner-windows (window) "
          "| miners' utilisation | replicas agree |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        f = lambda v: "" if v is None else f"{v:.4f}"
        print(f"| {r['miners']} | {f(r['loss_at_window_0'])} | "
              f"{f(r[f'loss_after_{FIXED_WINDOWS}_windows'])} | "
              f"{f(r[f'loss_at_{BUDGET}_miner_windows'])} ({r['budget_window']}) | "
              f"{r['utilisation']} | {r['replicas_agree']} |")
    adv = os.path.join(out, "adversaries", "report.json")
    if os.path.exists(adv):
        with open(adv) as f:
            r = json.load(f)
        print(f"\n6 honest + noise, wrong-data: share after window 10 "
              f"{r.get('adversary_share_after_10')}, at the end {r.get('adversary_share_final')}, "
              f"honest loss {r.get('honest_final_val_loss')} vs all-honest "
              f"{r.get('all_honest_final_val_loss')} (ratio {r.get('val_loss_ratio')})")


if __name__ == "__main__":
    main()
