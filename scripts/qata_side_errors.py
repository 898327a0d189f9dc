#!/usr/bin/env python3
"""How the model scores where a one-sided caption names the side opposite to its mask (docs/RESULTS.md,
"Threshold, post-processing and where the errors are").

For every `valid` image whose caption is unilateral and names one lung, the mask's centroid decides the side
it lies on in the displayed image (the rule `tgcnet data check` uses to measure the side convention, which it
reports only as counts; QaTa's captions use the `image` convention); the per-image Dice of `tgcnet eval`'s
eval.json is then averaged over the captions that agree with the mask and over those that contradict it.

    tgcnet eval --checkpoint checkpoints/qata-small.safetensors --data QATA --split val --out ev
    python3 scripts/qata_side_errors.py ev/eval.json QATA/images/valid/masks

Needs numpy and pillow. Not used by the build or the tests.
"""
import json
import sys

import numpy as np
from PIL import Image


def main(eval_json, gt_dir):
    with open(eval_json) as f:
        images = json.load(f)["images"]
    agree, contradict = [], []
    for x in images:
        c = x["caption"].lower()
        sides = [s for s in ("left", "right") if f"{s} lung" in c]
        if not c.startswith("unilateral") or len(sides) != 1:
            continue
        m = np.array(Image.open(f"{gt_dir}/mask_{x['id']}.png").convert("L")) > 127
        if not m.any():
            continue
        on_left = np.nonzero(m)[1].mean() / m.shape[1] < 0.5
        (agree if on_left == (sides[0] == "left") else contradict).append(x["dice"])
    if not agree or not contradict:
        sys.exit(f"{eval_json}: no one-sided caption {'agrees with' if not agree else 'contradicts'} its mask; "
                 "nothing to compare")
    n = len(images)
    print("| one-sided captions | images | Dice per-image |\n|---|---|---|")
    for name, d in (("name the mask's side", agree), ("name the other side", contradict)):
        print(f"| {name} | {len(d)} | {100 * np.mean(d):.2f} |")
    cost = (np.mean(agree) - np.mean(contradict)) * len(contradict) / n
    print(f"\nIf the contradicting images scored as the agreeing ones, Dice per-image over all {n} images "
          f"would be {100 * cost:.2f} points higher.")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
