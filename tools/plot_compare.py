#!/usr/bin/env python3
"""Draws `pickscore compare --json` output as a PNG: per scorer, each generator's mean score with its
95% bootstrap interval (left), and the win-rate matrix (right).

    pickscore compare --manifest m.jsonl --scorer pickscore,aesthetic --model PS/,AE/ --json > cmp.json
    python3 tools/plot_compare.py cmp.json cmp.png

Needs matplotlib (tools/requirements-data.txt pins it).
"""
import argparse
import json
import math
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="the JSON object `pickscore compare --json` prints ('-': stdin)")
    ap.add_argument("output", help="the PNG to write")
    args = ap.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = sys.stdin.read() if args.input == "-" else open(args.input, encoding="utf-8").read()
    doc = json.loads(text)
    gens = doc["generators"]
    scorers = doc["scorers"]
    if not scorers:
        raise SystemExit("error: no scorers in the input")
    rows = len(scorers)
    fig, axes = plt.subplots(rows, 2, figsize=(11, 0.6 * len(gens) * rows + 2.2 * rows), squeeze=False)
    for r, s in enumerate(scorers):
        ax = axes[r][0]
        means = [g["mean"] if g["mean"] is not None else math.nan for g in s["generators"]]
        lo = [g["ci_low"] if g["ci_low"] is not None else m for g, m in zip(s["generators"], means)]
        hi = [g["ci_high"] if g["ci_high"] is not None else m for g, m in zip(s["generators"], means)]
        order = sorted(range(len(gens)), key=lambda i: (math.isnan(means[i]), means[i]))
        ys = list(range(len(order)))
        ax.errorbar([means[i] for i in order], ys,
                    xerr=[[means[i] - lo[i] for i in order], [hi[i] - means[i] for i in order]],
                    fmt="o", capsize=4)
        ax.set_yticks(ys)
        ax.set_yticklabels([gens[i] for i in order])
        ax.set_xlabel(f"{s['scorer']}: {s.get('score', 'score')} (mean, 95% bootstrap interval)")
        ax.grid(axis="x", alpha=0.3)

        ax = axes[r][1]
        win = [[w if w is not None else math.nan for w in row] for row in s["win_rates"]]
        im = ax.imshow(win, vmin=0.0, vmax=1.0, cmap="RdBu")
        ax.set_xticks(range(len(gens)))
        ax.set_xticklabels(gens, rotation=45, ha="right")
        ax.set_yticks(range(len(gens)))
        ax.set_yticklabels(gens)
        for a in range(len(gens)):
            for b in range(len(gens)):
                if not math.isnan(win[a][b]):
                    ax.text(b, a, f"{win[a][b]:.2f}", ha="center", va="center", fontsize=8)
        ax.set_title(f"{s['scorer']}: row beats column")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{doc.get('prompts', '?')} prompts, {len(gens)} generators")
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
