#!/usr/bin/env python3
"""Paired comparison of two `tgcnet eval` reports on the same images (docs/RESULTS.md).

    python3 scripts/paired_dice.py A/eval.json B/eval.json

Prints each report's per-image Dice, the mean of the per-image differences B - A and its 95 % interval from
10,000 paired bootstrap resamples of the images (fixed seed), and how many images got better or worse.
Standard library only; not used by the build or the tests.
"""
import json
import random
import sys


def per_image(path):
    with open(path) as f:
        return {r["id"]: r["dice"] for r in json.load(f)["images"]}


def main(a_path, b_path):
    a, b = per_image(a_path), per_image(b_path)
    ids = sorted(set(a) & set(b))
    if len(ids) != len(a) or len(ids) != len(b):
        sys.exit(f"the reports hold different images ({len(a)} and {len(b)}, {len(ids)} shared)")
    d = [b[i] - a[i] for i in ids]
    n = len(d)
    rng = random.Random(2026)
    means = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(10_000))
    mean = sum(d) / n
    print(f"images: {n}")
    print(f"A per-image Dice: {100 * sum(a[i] for i in ids) / n:.2f}")
    print(f"B per-image Dice: {100 * sum(b[i] for i in ids) / n:.2f}")
    print(f"B - A: {100 * mean:+.2f} points, 95 % paired bootstrap interval "
          f"[{100 * means[250]:+.2f}, {100 * means[9750]:+.2f}]")
    print(f"images better / worse by more than 1 point: {sum(x > 0.01 for x in d)} / {sum(x < -0.01 for x in d)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
