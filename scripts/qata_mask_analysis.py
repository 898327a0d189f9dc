#!/usr/bin/env python3
"""Post-processing and error analysis of saved predictions (docs/RESULTS.md, "What limits it").

Reads the 224-px masks written by `tgcnet eval --save-masks DIR` and the dataset's ground-truth masks
(resized to 224 px with nearest neighbour, as tgcnet's loader does; the script's Dice without
post-processing equals eval.md's to 0.01), then reports
  1. Dice (per-image, global) after dropping connected components smaller than A pixels (never emptying
     an image: its largest component is kept) and with holes filled;
  2. how Dice and the predicted/true area ratio vary with the lesion's size (quartiles of the true area).

    tgcnet eval --checkpoint checkpoints/qata-small.safetensors --data QATA --split val --save-masks masks
    python3 scripts/qata_mask_analysis.py masks QATA/images/valid/masks

Needs numpy, scipy and pillow. Not used by the build or the tests.
"""
import os
import sys

import numpy as np
from PIL import Image
from scipy import ndimage


def load(pred_dir, gt_dir):
    names = sorted(f[: -len("_mask.png")] for f in os.listdir(pred_dir) if f.endswith("_mask.png"))
    for n in names:
        p = np.array(Image.open(f"{pred_dir}/{n}_mask.png").convert("L")) > 127
        g = Image.open(f"{gt_dir}/mask_{n}.png").convert("L").resize(p.shape[::-1], Image.NEAREST)
        yield p, np.array(g) > 127


def dice(p, g):
    den = p.sum() + g.sum()
    return 1.0 if den == 0 else 2.0 * (p & g).sum() / den


def filtered(p, min_area, fill):
    lab, k = ndimage.label(p)
    q = p
    if min_area and k:
        sizes = ndimage.sum(p, lab, range(1, k + 1))
        kept = [i + 1 for i, s in enumerate(sizes) if s >= min_area] or [int(np.argmax(sizes)) + 1]
        q = np.isin(lab, kept)
    return ndimage.binary_fill_holes(q) if fill else q


def main(pred_dir, gt_dir):
    pairs = list(load(pred_dir, gt_dir))
    print("| min component area (px) | holes filled | Dice per-image | Dice global |\n|---|---|---|---|")
    for area in [0, 10, 20, 40, 60, 100, 150]:
        for fill in [False, True]:
            ds, inter, den = [], 0, 0
            for p, g in pairs:
                q = filtered(p, area, fill)
                ds.append(dice(q, g))
                inter += (q & g).sum()
                den += q.sum() + g.sum()
            print(f"| {area} | {fill} | {100 * np.mean(ds):.2f} | {100 * 2 * inter / den:.2f} |")
    frac = np.array([g.mean() for _, g in pairs])
    pred = np.array([p.mean() for p, _ in pairs])
    d = np.array([dice(p, g) for p, g in pairs])
    q = np.quantile(frac, [0.25, 0.5, 0.75])
    print("\n| true lesion area (fraction of the image) | images | Dice per-image | predicted / true area |")
    print("|---|---|---|---|")
    for lo, hi in zip([0.0, *q], [*q, 1.01]):
        m = (frac >= lo) & (frac < hi)
        print(f"| {lo:.3f}-{min(hi, 1.0):.3f} | {m.sum()} | {100 * d[m].mean():.2f} | {pred[m].sum() / frac[m].sum():.2f} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
