#!/usr/bin/env python3
"""The ablation table of docs/RESULTS.md from the run directories of scripts/qata_ablations.sh.

    python3 scripts/ablation_table.py runs/qata-short

Reads every RUN/eval.json (the best checkpoint on the whole `valid` split, with the caption conditions when
the arm has text), RUN/metrics.csv (the validation curve) and RUN/wall.txt (seconds of training and
evaluation). Prints one row per run, then one per arm with the mean over its seeds and the half range
(half the difference between the seeds' extremes), then the arms' differences to `full`. Standard library
only; not used by the build or the tests.
"""

import csv
import json
import os
import re
import sys


def runs(root):
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if not os.path.isfile(os.path.join(d, "eval.json")):
            continue
        m = re.fullmatch(r"(.+?)(?:-seed(\d+))?", name)
        arm, seed = m.group(1), int(m.group(2) or 2026)
        with open(os.path.join(d, "eval.json")) as f:
            ev = json.load(f)
        with open(os.path.join(d, "metrics.csv")) as f:
            curve = [float(r["val_dice_per_image"]) for r in csv.DictReader(f)]
        wall = None
        if os.path.isfile(os.path.join(d, "wall.txt")):
            with open(os.path.join(d, "wall.txt")) as f:
                wall = int(f.read().strip())
        s = ev["summary"]
        cond = {c["condition"]: c["delta_dice_per_image"] for c in ev.get("conditions", [])}
        yield {
            "arm": arm,
            "seed": seed,
            "per_image": 100 * s["dice_per_image"],
            "global": 100 * s["dice_global"],
            "hd95": s.get("hd95_mean"),
            "shuffled": 100 * cond["shuffled"] if "shuffled" in cond else None,
            "swapped": 100 * cond["swapped"] if "swapped" in cond else None,
            "curve": curve,
            "wall": wall,
        }


def fmt(x, signed=False):
    if x is None:
        return "-"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def main(root):
    rows = list(runs(root))
    if not rows:
        sys.exit(f"{root}: no run directory with an eval.json")
    print("| arm | seed | Dice per-image | Dice global | HD95 | Δ shuffled | Δ swapped | per-image by epoch | wall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        curve = " → ".join(f"{100 * c:.2f}" for c in r["curve"])
        wall = f"{r['wall'] / 60:.0f} min" if r["wall"] else "-"
        print(
            f"| {r['arm']} | {r['seed']} | {fmt(r['per_image'])} | {fmt(r['global'])} | {fmt(r['hd95'])} | "
            f"{fmt(r['shuffled'], True)} | {fmt(r['swapped'], True)} | {curve} | {wall} |"
        )
    arms = {}
    for r in rows:
        arms.setdefault(r["arm"], []).append(r)
    print("\n| arm | seeds | Dice per-image (mean ± half range) | Dice global (mean ± half range) | vs full per-image | vs full global |")
    print("|---|---|---|---|---|---|")
    mean = lambda xs: sum(xs) / len(xs)
    half = lambda xs: (max(xs) - min(xs)) / 2
    full = arms.get("full")
    for arm, rs in arms.items():
        p, g = [r["per_image"] for r in rs], [r["global"] for r in rs]
        dp = dg = "-"
        if full and arm != "full":
            dp = fmt(mean(p) - mean([r["per_image"] for r in full]), True)
            dg = fmt(mean(g) - mean([r["global"] for r in full]), True)
        print(
            f"| {arm} | {len(rs)} | {mean(p):.2f} ± {half(p):.2f} | {mean(g):.2f} ± {half(g):.2f} | {dp} | {dg} |"
        )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
