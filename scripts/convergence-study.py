#!/usr/bin/env python3
"""docs/CONVERGENCE.md's 100-outer-step study from the runs of scripts/convergence-study.sh:
the CSV of every run's validation loss and SparseLoCo's error-feedback norm per outer step
(tiny-r4-h10-1000.csv), the knobs' final losses when they were run (tiny-r4-h10-1000-knobs.csv),
and the plot
(tiny-r4-h10-1000.svg: the losses, and SparseLoCo − DiLoCo per outer step for both seeds).
Prints the markdown tables. Usage: scripts/convergence-study.py [RUNS] [DOCS]
(defaults runs/convergence-tiny, docs/convergence)."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "runs", "convergence-tiny")
DOCS = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "docs", "convergence")
H = 10
SEEDS = [0, 1]
KNOBS = [("outer lr 0.4", "knob-outer-lr-0.4"), ("top-128 of 4096 (3.1 %)", "knob-topk-128"),
         ("β 0.9", "knob-beta-0.9")]
COLOURS = {"diloco": "#1f77b4", "sparseloco": "#ff7f0e"}


def points(run, algo):
    with open(os.path.join(RUNS, run, algo, "result.json")) as f:
        r = json.load(f)
    return {p["inner_step"] // H: p for p in r["points"]}


def polyline(pts, sx, sy, colour, dash=""):
    d = f' stroke-dasharray="{dash}"' if dash else ""
    xy = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="1.6"{d} points="{xy}"/>'


def panel(out, ox, w, h, pad, series, ylabel, zero=False):
    """series: [(label, colour, dash, [(x, y)])]."""
    xs = [x for s in series for x, _ in s[3]]
    ys = [y for s in series for _, y in s[3]]
    xmax, lo, hi = max(xs), min(ys + ([0] if zero else [])), max(ys + ([0] if zero else []))
    sx = lambda x: ox + pad + x / xmax * (w - 2 * pad)
    sy = lambda y: h - pad + 20 - (y - lo) / (hi - lo) * (h - 2 * pad)
    out.append(f'<line x1="{ox + pad}" y1="{h - pad + 20}" x2="{ox + w - pad}" y2="{h - pad + 20}" stroke="black"/>')
    out.append(f'<line x1="{ox + pad}" y1="{sy(hi)}" x2="{ox + pad}" y2="{h - pad + 20}" stroke="black"/>')
    if zero:
        out.append(f'<line x1="{ox + pad}" y1="{sy(0)}" x2="{ox + w - pad}" y2="{sy(0)}" stroke="#999" stroke-dasharray="3 3"/>')
    for i in range(5):
        y = lo + (hi - lo) * i / 4
        out.append(f'<text x="{ox + pad - 6}" y="{sy(y) + 4}" text-anchor="end">{y:.2f}</text>')
        x = xmax * i / 4
        out.append(f'<text x="{sx(x)}" y="{h - pad + 36}" text-anchor="middle">{x:.0f}</text>')
    out.append(f'<text x="{ox + w / 2}" y="{h + 30}" text-anchor="middle">outer step</text>')
    out.append(f'<text x="{ox + 14}" y="{h / 2}" transform="rotate(-90 {ox + 14} {h / 2})" text-anchor="middle">{ylabel}</text>')
    for i, (label, colour, dash, pts) in enumerate(series):
        out.append(polyline(pts, sx, sy, colour, dash))
        y = 24 + 16 * i
        d = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{ox + w - 190}" y1="{y}" x2="{ox + w - 170}" y2="{y}" stroke="{colour}" stroke-width="2"{d}/>')
        out.append(f'<text x="{ox + w - 165}" y="{y + 4}">{label}</text>')


def main():
    runs = {(s, a): points(f"seed{s}", a) for s in SEEDS for a in ("diloco", "sparseloco")}
    steps = sorted(set.intersection(*(set(r) for r in runs.values())))
    os.makedirs(DOCS, exist_ok=True)
    base = os.path.join(DOCS, "tiny-r4-h10-1000")
    with open(base + ".csv", "w") as f:
        cols = ["outer_step", "tokens"]
        for s in SEEDS:
            cols += [f"diloco_seed{s}", f"sparseloco_seed{s}", f"gap_seed{s}", f"ef_norm_seed{s}"]
        f.write(",".join(cols) + "\n")
        for k in steps:
            row = [str(k), str(runs[(0, "diloco")][k]["tokens"])]
            for s in SEEDS:
                d, sp = runs[(s, "diloco")][k], runs[(s, "sparseloco")][k]
                ef = (sp.get("sparse") or {}).get("ef_norm")
                row += [f"{d['val_loss']:.5f}", f"{sp['val_loss']:.5f}",
                        f"{sp['val_loss'] - d['val_loss']:.5f}", "" if ef is None else f"{ef:.4f}"]
            f.write(",".join(row) + "\n")
    knobs = []
    for label, run in KNOBS:
        try:
            p = points(run, "sparseloco")
        except FileNotFoundError:
            continue
        last = max(p)
        knobs.append((label, run, p[last]["val_loss"], p[last]["bytes_per_replica"], p))
    if knobs:
        with open(base + "-knobs.csv", "w") as f:
            f.write("run,outer_steps,final_val_loss,bytes_per_replica\n")
            sp0 = runs[(0, "sparseloco")]
            last = max(sp0)
            f.write(f"sparseloco seed 0 (reference knobs),{last},{sp0[last]['val_loss']:.5f},{sp0[last]['bytes_per_replica']}\n")
            d0 = runs[(0, "diloco")]
            f.write(f"diloco seed 0,{max(d0)},{d0[max(d0)]['val_loss']:.5f},{d0[max(d0)]['bytes_per_replica']}\n")
            for label, run, loss, b, p in knobs:
                f.write(f"sparseloco seed 0 {label},{max(p)},{loss:.5f},{b}\n")
    # The plot: losses (both seeds) and the gap per outer step.
    w, h, pad = 470, 330, 58
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h + 40}" '
           'font-family="sans-serif" font-size="12">', f'<rect width="{2 * w}" height="{h + 40}" fill="white"/>']
    loss_series = []
    for s in SEEDS:
        for a in ("diloco", "sparseloco"):
            pts = [(k, runs[(s, a)][k]["val_loss"]) for k in steps if k >= 5]
            loss_series.append((f"{a} seed {s}", COLOURS[a], "" if s == 0 else "5 3", pts))
    panel(out, 0, w, h, pad, loss_series, "validation loss (from outer step 5)")
    gap_series = [(f"SparseLoCo − DiLoCo, seed {s}", "#2ca02c" if s == 0 else "#d62728", "",
                   [(k, runs[(s, "sparseloco")][k]["val_loss"] - runs[(s, "diloco")][k]["val_loss"])
                    for k in steps if k >= 1]) for s in SEEDS]
    panel(out, w, w, h, pad, gap_series, "loss gap (nats)", zero=True)
    out.append("</svg>")
    with open(base + ".svg", "w") as f:
        f.write("\n".join(out) + "\n")
    # Markdown tables.
    print("| outer step | tokens | DiLoCo s0 | SparseLoCo s0 | gap s0 | ‖e‖ s0 | DiLoCo s1 | SparseLoCo s1 | gap s1 | ‖e‖ s1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in [1, 2, 5, 10, 16, 20, 30, 40, 50, 60, 70, 80, 90, 100]:
        if k not in steps:
            continue
        row = [str(k), f"{runs[(0, 'diloco')][k]['tokens']:,}"]
        for s in SEEDS:
            d, sp = runs[(s, "diloco")][k], runs[(s, "sparseloco")][k]
            ef = (sp.get("sparse") or {}).get("ef_norm")
            row += [f"{d['val_loss']:.3f}", f"{sp['val_loss']:.3f}", f"{sp['val_loss'] - d['val_loss']:+.3f}",
                    "" if ef is None else f"{ef:.1f}"]
        print("| " + " | ".join(row) + " |")
    print()
    print("| run (seed 0) | final val loss | vs reference knobs | bytes per replica |")
    print("|---|---|---|---|")
    sp0 = runs[(0, "sparseloco")]
    ref = sp0[max(sp0)]["val_loss"]
    print(f"| SparseLoCo, reference knobs (outer lr 1.0, top-64, β 0.95) | {ref:.4f} | — | {sp0[max(sp0)]['bytes_per_replica']:,} |")
    for label, _, loss, b, _ in knobs:
        print(f"| SparseLoCo, {label} | {loss:.4f} | {loss - ref:+.4f} | {b:,} |")
    d0 = runs[(0, "diloco")]
    print(f"| DiLoCo | {d0[max(d0)]['val_loss']:.4f} | {d0[max(d0)]['val_loss'] - ref:+.4f} | {d0[max(d0)]['bytes_per_replica']:,} |")


if __name__ == "__main__":
    main()
