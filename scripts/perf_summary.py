"""Summarises scripts/perf_compare.sh / gpu_bench.sh output: median over rounds, Rust/PyTorch ratios, as a
markdown table."""
import glob
import json
import os
import statistics
import sys

out = sys.argv[1]
runs = {}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(f)[:-5]
    parts = name.split("-")
    if parts[-1].isdigit():
        parts = parts[:-1]
    impl, preset = "-".join(parts[:-1]), parts[-1]
    try:
        r = json.load(open(f))
    except (json.JSONDecodeError, OSError):
        continue
    runs.setdefault((impl, preset), []).append(r)


def med(rs, get):
    vals = [v for v in (get(r) for r in rs) if v is not None]
    return statistics.median(vals) if vals else None


metrics = [
    ("inference batch 1 (ms)", lambda r: r["inference_latency"]["median_ms"]),
    ("inference batch 8 (ms)", lambda r: r["inference_throughput"]["median_ms"]),
    ("train step batch 4 (ms)", lambda r: (r.get("train_step") or {}).get("median_ms")),
    ("peak RSS training (MiB)", lambda r: r.get("peak_rss_train_mb")),
    ("peak GPU memory training (MiB)", lambda r: r.get("peak_gpu_train_mb")),
    # The fastest single run over all rounds: on a machine whose speed drifts, interference only ever
    # slows a run down, so the minimum is the steadier comparison of two programs.
    ("fastest inference batch 1 (ms)", lambda r: r["inference_latency"]["min_ms"]),
    ("fastest inference batch 8 (ms)", lambda r: r["inference_throughput"]["min_ms"]),
    ("fastest train step batch 4 (ms)", lambda r: (r.get("train_step") or {}).get("min_ms")),
]


def agg(label, vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return min(vals) if label.startswith("fastest") else statistics.median(vals)


impls = sorted({i for i, _ in runs})
presets = sorted({p for _, p in runs})
for p in presets:
    print(f"\n### {p}\n")
    have = [i for i in impls if (i, p) in runs]
    print("| metric | " + " | ".join(f"{i} ({len(runs[(i, p)])} rounds)" for i in have) + " | ratios |")
    print("|---|" + "---|" * (len(have) + 1))
    for label, get in metrics:
        vals = {i: agg(label, [get(r) for r in runs[(i, p)]]) for i in have}
        if all(v is None for v in vals.values()):
            continue
        cells = [f"{vals[i]:.1f}" if vals[i] is not None else "-" for i in have]
        ratios = []
        for i in have:
            if i.startswith("rust"):
                peer = ("torch" + i[len("rust"):]).replace("wgpu", "cuda")
                if peer in vals and vals[peer] and vals[i]:
                    ratios.append(f"{i}/{peer} = {vals[i] / vals[peer]:.2f}x")
                if vals.get("base") and vals[i]:
                    ratios.append(f"{i}/base = {vals[i] / vals['base']:.2f}x")
        print(f"| {label} | " + " | ".join(cells) + " | " + ", ".join(ratios) + " |")
    for key, what in [("stages", "batch-1 stages"), ("train_phases", "train-step phases")]:
        for i in have:
            sm = {}
            for r in runs[(i, p)]:
                for s in r.get(key) or []:
                    sm.setdefault(s["stage"], []).append(s["median_ms"])
            if sm:
                print(f"\n{i} {what} (ms): " + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in sm.items()))
