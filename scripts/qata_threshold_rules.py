#!/usr/bin/env python3
"""Does a per-image threshold help? (docs/RESULTS.md, "Threshold, post-processing and where the errors are").

The shipped model over-segments small lesions (their predicted area is ~1.5 times the true one), yet one
threshold for all images moves per-image Dice by only ~0.2. This script asks whether a threshold chosen per
image from what is known at inference time (the predicted area at the default threshold, the caption's number
of infected areas and sides) does better, with the rule selected on one half of the images and scored on the
other (two folds, halves drawn with a fixed seed), against the oracle that picks each image's best threshold
with hindsight (an upper bound no rule reaches).

Input: the masks of one `tgcnet eval --save-masks DIR/T/masks --threshold T` run per threshold T, plus that
run's eval.json (for the captions), and the dataset's ground-truth masks:

    for t in 0.3 0.4 0.5 0.6 0.7 0.8; do
      tgcnet eval --checkpoint checkpoints/qata-small.safetensors --data QATA --split val --batch-size 16 \
        --threshold $t --save-masks runs/qata/thr/$t/masks --out runs/qata/thr/$t
    done
    python3 scripts/qata_threshold_rules.py runs/qata/thr QATA/images/valid/masks 0.4

Needs numpy and pillow. Not used by the build or the tests.
"""
import json
import os
import re
import sys

import numpy as np
from PIL import Image


def load(root, gt_dir, base):
    # (value, folder name): the folders keep their own spelling ("0.30" as well as "0.3")
    dirs = sorted((float(d), d) for d in os.listdir(root) if os.path.isdir(f"{root}/{d}/masks"))
    if not dirs:
        sys.exit(f"{root}: no THRESHOLD/masks folders (see the usage above)")
    thresholds = [t for t, _ in dirs]
    report = json.load(open(f"{root}/{base}/eval.json"))
    ids = [im["id"] for im in report["images"]]
    captions = [im["caption"] for im in report["images"]]
    n = len(ids)
    # inter[i, k], pred[i, k]: pixels of image i's prediction at threshold k (and those also in the mask)
    inter = np.zeros((n, len(thresholds)))
    pred = np.zeros((n, len(thresholds)))
    true = np.zeros(n)
    for i, name in enumerate(ids):
        g = None
        for k, (_, folder) in enumerate(dirs):
            p = np.array(Image.open(f"{root}/{folder}/masks/{safe(name)}_mask.png").convert("L")) > 127
            if g is None:
                g = Image.open(f"{gt_dir}/mask_{name}.png").convert("L").resize(p.shape[::-1], Image.NEAREST)
                g = np.array(g) > 127
                true[i] = g.sum()
                size = g.size
            inter[i, k] = (p & g).sum()
            pred[i, k] = p.sum()
    return thresholds, captions, inter, pred, true, size


def safe(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def dice(inter, pred, true):
    den = pred + true
    return np.where(den == 0, 1.0, 2 * inter / np.maximum(den, 1))


def areas_of(caption):
    words = ["one", "two", "three", "four", "five", "six"]
    for j, w in enumerate(words):
        if f"{w} infected area" in caption:
            return j + 1
    return 0


def fit_rule(d, groups, idx):
    """Best threshold index of each group, chosen on the images in idx."""
    rule = {}
    for gname in np.unique(groups):
        sel = idx[groups[idx] == gname]
        rule[gname] = int(np.argmax(d[sel].mean(axis=0))) if len(sel) else None
    return rule


def apply_rule(d, groups, idx, rule, fallback):
    """Each image's Dice at its group's threshold (the default for a group the rule never saw)."""
    picks = [rule.get(groups[i]) for i in idx]
    return np.array([d[i, fallback if k is None else k] for i, k in zip(idx, picks)])


def cross_validated(d, groups, base_k, seed=7):
    """Per-image Dice of a group-wise threshold, each half scored with the rule fitted on the other."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(d))
    halves = [order[: len(d) // 2], order[len(d) // 2 :]]
    scored = np.zeros(len(d))
    for fit, score in [(0, 1), (1, 0)]:
        rule = fit_rule(d, groups, halves[fit])
        scored[halves[score]] = apply_rule(d, groups, halves[score], rule, base_k)
    return scored, fit_rule(d, groups, order)


def main(root, gt_dir, base):
    thresholds, captions, inter, pred, true, size = load(root, gt_dir, base)
    d = dice(inter, pred, true[:, None])
    base_k = thresholds.index(float(base))
    print(f"{len(d)} images, thresholds {thresholds}, default {base}\n")
    print("| threshold (one for all) | Dice per-image | Dice global |\n|---|---|---|")
    for k, t in enumerate(thresholds):
        g = 200 * inter[:, k].sum() / (pred[:, k].sum() + true.sum())
        print(f"| {t} | {100 * d[:, k].mean():.2f} | {g:.2f} |")
    print(f"\nOracle (each image's best threshold, with hindsight): {100 * d.max(axis=1).mean():.2f} per image\n")

    frac = pred[:, base_k] / size
    qs = np.quantile(frac, [0.25, 0.5, 0.75])
    area_bin = np.digitize(frac, qs)
    n_areas = np.array([areas_of(c) for c in captions])
    sides = np.array(["uni" if c.startswith("unilateral") else "bi" for c in captions])
    rules = {
        "predicted area at the default (quartiles)": area_bin.astype(str),
        "caption's number of infected areas": n_areas.astype(str),
        "caption's sides": sides,
        "areas x sides": np.char.add(n_areas.astype(str), sides),
        "predicted-area quartile x caption's areas": np.char.add(area_bin.astype(str), n_areas.astype(str)),
    }
    print("| threshold chosen per group of | Dice per-image (2-fold CV) | Δ vs default | rule fitted on all |")
    print("|---|---|---|---|")
    for name, groups in rules.items():
        scored, rule = cross_validated(d, groups, base_k)
        shown = ", ".join(f"{g}: {thresholds[k]}" for g, k in sorted(rule.items()) if k is not None)
        delta = 100 * (scored.mean() - d[:, base_k].mean())
        print(f"| {name} | {100 * scored.mean():.2f} | {delta:+.2f} | {shown} |")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
