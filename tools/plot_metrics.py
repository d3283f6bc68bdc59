#!/usr/bin/env python3
"""Draw the loss and accuracy curves of a `pickscore train` run to a PNG.

    python tools/plot_metrics.py runs/pickscore/                 # reads runs/pickscore/metrics.jsonl
    python tools/plot_metrics.py runs/a/metrics.jsonl -o curves.png --smooth 50

The metrics file has one JSON object per line: a training step ({"step", "loss", "accuracy", "lr",
"grad_norm", "examples_per_s", ...}) or a validation ({"step", "split", "pairwise_accuracy",
"accuracy", "threshold", "count"}). A step that appears twice (a run resumed from an earlier
checkpoint) is drawn once, with its last value. Left panel: the training loss per step (faint) and
its moving average; right panel: the training accuracy (moving average) and the validation's
pairwise and tie-aware accuracies. Default output: curves.png beside the metrics file.

Needs matplotlib (tools/requirements-data.txt).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_metrics(path: Path):
    steps: dict[int, dict] = {}
    evals: dict[int, dict] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            j = json.loads(line)
        except json.JSONDecodeError:
            print(f"{path}:{n}: not JSON, skipped (a line cut by a kill?)", file=sys.stderr)
            continue
        if "step" not in j:
            continue
        (evals if "split" in j else steps)[int(j["step"])] = j
    return [steps[k] for k in sorted(steps)], [evals[k] for k in sorted(evals)]


def moving_average(xs: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x
        if i >= window:
            acc -= xs[i - window]
        out.append(acc / min(i + 1, window))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("metrics", type=Path, help="metrics.jsonl, or the run's folder (--out of pickscore train)")
    ap.add_argument("-o", "--output", type=Path, help="the PNG to write (default: curves.png beside the metrics)")
    ap.add_argument("--smooth", type=int, default=0, help="moving-average window in steps (default: steps/50, at least 1)")
    ap.add_argument("--title", help="the figure's title (default: the run's folder name)")
    args = ap.parse_args(argv)

    path = args.metrics / "metrics.jsonl" if args.metrics.is_dir() else args.metrics
    if not path.exists():
        ap.error(f"{path} does not exist")
    steps, evals = read_metrics(path)
    if not steps and not evals:
        ap.error(f"{path} holds no training steps or validations")
    out = args.output or path.parent / "curves.png"

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = args.smooth or max(1, len(steps) // 50)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    if steps:
        steps_with_loss = [s for s in steps if s.get("loss") is not None]  # null: a non-finite loss
        x = [s["step"] for s in steps_with_loss]
        loss = [s["loss"] for s in steps_with_loss]
        ax_loss.plot(x, loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="loss")
        ax_loss.plot(x, moving_average(loss, window), color="tab:blue", label=f"loss ({window}-step mean)")
        acc = [s["accuracy"] for s in steps]
        ax_acc.plot([s["step"] for s in steps], moving_average(acc, window), color="tab:blue", alpha=0.7,
                    label=f"training accuracy ({window}-step mean)")
    if evals:
        x = [e["step"] for e in evals]
        split = evals[-1].get("split", "validation")
        ax_acc.plot(x, [e["pairwise_accuracy"] for e in evals], "o-", color="tab:orange",
                    label=f"{split}: pairwise accuracy")
        ax_acc.plot(x, [e["accuracy"] for e in evals], "s--", color="tab:green",
                    label=f"{split}: tie-aware accuracy (best threshold)")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss (KL to the labels)")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0.0, 1.02)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    fig.suptitle(args.title or path.parent.resolve().name)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"{out}: {len(steps)} steps, {len(evals)} validations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
