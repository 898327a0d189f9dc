#!/usr/bin/env python3
"""The `tgcnet bench` benchmark (crates/train/src/bench.rs) on the PyTorch reference of TGC-Net
(scripts/reference/tgcnet_ref.py), for comparing our Rust/burn speed and memory with PyTorch's.

For a configuration (preset tiny / small / paper, or a config file) at its image size, on random weights
and synthetic inputs with QaTa-style captions:
  - inference latency at batch 1 (eval, torch.inference_mode), with the time of each forward stage;
  - inference throughput at batch 8;
  - one training step at batch 4: forward, loss (0.5 Dice + 0.5 BCE-with-logits + 0.1 BCE per similarity
    map, as crates/model/src/loss.rs), backward, global-norm gradient clipping at 1.0 and an AdamW update
    (lr 1e-4, betas 0.9/0.999, eps 1e-8, weight decay 1e-2: our TrainConfig defaults), with the CLIP towers
    frozen as the config says;
  - peak resident memory of the process (Linux VmHWM, reset before each phase through
    /proc/self/clear_refs where the kernel allows it) and, on CUDA, peak allocated GPU memory.
Each measurement: `--warmup` untimed runs, then the median (and min, max) of `--repeats` timed runs; the
device is synchronised before each run and after it (CUDA). Threads: torch.set_num_threads(os.cpu_count())
unless --threads (on a machine whose cores are busy with other work, PyTorch's spinning OpenMP workers can
make multi-threaded CPU timings erratic and many times slower: compare with --threads 1 there). The JSON
(--json) has the fields of `tgcnet bench --json`, plus a few of its own (framework and torch version, peak
GPU memory).

Knowledge passages: the config's knowledge file (default knowledge/default.toml), tokenised with open_clip's
tokenizer; the passages matched in each caption come from a simplified matcher (whole-word, longest match
first, without the zone-list expansion of crates/model/src/knowledge.rs), which agrees with ours on the
benchmark's captions.

Examples (from the repository root):
    /work/venv/py/bin/python scripts/reference/bench_ref.py --preset tiny
    /work/venv/py/bin/python scripts/reference/bench_ref.py --preset paper --json
    /work/venv/py/bin/python scripts/reference/bench_ref.py --preset small --device cuda --json
--preset asks the tgcnet binary for the resolved config (--tgcnet, $TGCNET, target/release/tgcnet, ...),
else uses the stored scripts/reference/presets/NAME.toml; --config takes `tgcnet info --show-config` output
(TOML, or JSON with --json) or a checkpoint.
"""
import argparse
import json
import os
import re
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tgcnet_ref as ref  # noqa: E402

# crates/train/src/bench.rs CAPTIONS
CAPTIONS = [
    "Bilateral pulmonary infection, two infected areas, middle left lung and lower right lung.",
    "Unilateral pulmonary infection, one infected area, lower left lung.",
    "Bilateral pulmonary infection, three infected areas, upper left lung, middle left lung and lower right lung.",
    "Unilateral pulmonary infection, one infected area, middle right lung.",
    "Bilateral pulmonary infection, two infected areas, lower left lung and lower right lung.",
    "Unilateral pulmonary infection, two infected areas, upper right lung and middle right lung.",
    "Bilateral pulmonary infection, four infected areas, upper left lung, lower left lung, upper right lung and "
    "lower right lung.",
    "Unilateral pulmonary infection, one infected area, upper left lung.",
]


def phrases(text):
    """Lower-cased word lists; hyphens, slashes, apostrophes and underscores separate words, other
    punctuation ends a phrase."""
    out = []
    for chunk in re.split(r"[^a-z0-9\s\-/'_]+", text.lower()):
        words = re.findall(r"[a-z0-9]+", chunk)
        if words:
            out.append(words)
    return out


def match_report(entries, caption):
    """Simplified `KnowledgeBase::match_report`: sorted passage indices."""
    aliases = []
    for i, e in enumerate(entries):
        for a in [e["term"], *e.get("aliases", [])]:
            words = re.findall(r"[a-z0-9]+", a.lower())
            if words:
                aliases.append((words, i))
    found = set()
    for words in phrases(caption):
        occ = []
        for alias, i in aliases:
            n = len(alias)
            for s in range(len(words) - n + 1):
                if words[s:s + n] == alias:
                    occ.append((-n, s, i))
        claimed = [False] * len(words)
        for neg_n, s, i in sorted(occ):
            span = range(s, s - neg_n)
            if not any(claimed[j] for j in span):
                for j in span:
                    claimed[j] = True
                found.add(i)
    return sorted(found)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def timing(ms):
    ms = sorted(ms)
    return {"median_ms": statistics.median(ms) if ms else float("nan"), "min_ms": ms[0] if ms else float("nan"),
            "max_ms": ms[-1] if ms else float("nan"), "runs": len(ms)}


def main():
    ap = argparse.ArgumentParser(description="PyTorch reference of `tgcnet bench`")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--preset", help="paper, small or tiny (default: small)")
    src.add_argument("--config", help="resolved config (TOML/JSON from `tgcnet info --show-config`)")
    ap.add_argument("--tgcnet", help="tgcnet binary used to resolve --preset")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--image-size", type=int, help="override the configuration's image size")
    ap.add_argument("--no-train", action="store_true", help="skip the training step")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--latency-batch", type=int, default=1)
    ap.add_argument("--throughput-batch", type=int, default=8)
    ap.add_argument("--train-batch", type=int, default=4)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if a.config:
        name, cfg = a.config, ref.load_config(a.config)
    else:
        name = a.preset or "small"
        cfg = ref.preset_config(name, a.tgcnet)
    if a.image_size:
        cfg["image_size"] = a.image_size
    s = cfg["image_size"]
    repeats = max(a.repeats, 1)

    torch.manual_seed(0)
    model = ref.TgcNet(cfg).to(device)
    ctx = cfg["clip"]["model"]["text"]["context_length"]
    entries = []
    if cfg["text"] and cfg["date"]["knowledge"]:
        entries = ref.knowledge_entries(cfg["date"].get("knowledge_file"))
        model.set_passages(ref.tokenize([ref.passage_text(e) for e in entries], ctx).to(device))
    total_params = sum(p.numel() for p in model.parameters())
    trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def batch(n):
        caps = [CAPTIONS[i % len(CAPTIONS)] for i in range(n)]
        ids = ref.tokenize(caps, ctx).to(device)
        return ref.TextBatch(ids, [match_report(entries, c) for c in caps] if entries else [[] for _ in caps])

    def images(n):
        return torch.randn(n, 3, s, s, device=device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # Inference, latency batch, with per-stage times.
    model.eval()
    reset_peak_rss()
    text, x = batch(a.latency_batch), images(a.latency_batch)
    totals, stage_ms = [], {}
    with torch.inference_mode():
        for i in range(a.warmup + repeats):
            sync(device)
            t0 = last = time.perf_counter()
            times = []

            def probe(stage):
                nonlocal last
                sync(device)
                now = time.perf_counter()
                times.append((stage, (now - last) * 1e3))
                last = now

            logits, _ = model(x, text, probe)
            logits.cpu()
            t = (time.perf_counter() - t0) * 1e3
            if i >= a.warmup:
                totals.append(t)
                for stage, ms in times:
                    stage_ms.setdefault(stage, []).append(ms)
    inference_latency = timing(totals)
    stages = [{"stage": k, "median_ms": statistics.median(v)} for k, v in stage_ms.items()]

    # Inference, throughput batch.
    text, x = batch(a.throughput_batch), images(a.throughput_batch)
    totals = []
    with torch.inference_mode():
        for i in range(a.warmup + repeats):
            sync(device)
            t0 = time.perf_counter()
            logits, _ = model(x, text)
            logits.cpu()
            if i >= a.warmup:
                totals.append((time.perf_counter() - t0) * 1e3)
    inference_throughput = timing(totals)
    images_per_s = a.throughput_batch / (inference_throughput["median_ms"] / 1e3)
    peak_rss_inference_mb = peak_rss_mb()
    peak_gpu_inference_mb = (torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None

    # Training step: forward, loss, backward, clipping, AdamW.
    train_step = peak_rss_train_mb = peak_gpu_train_mb = None
    train_phases = []
    if not a.no_train:
        reset_peak_rss()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        model.train()
        text, x = batch(a.train_batch), images(a.train_batch)
        mask = (torch.rand(a.train_batch, 1, s, s, device=device) < 0.3).float()
        params = [p for p in model.parameters() if p.requires_grad]
        optim = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
        totals = []
        phase_ms = [[], [], [], []]
        for i in range(a.warmup + repeats):
            sync(device)
            t0 = time.perf_counter()
            optim.zero_grad(set_to_none=True)
            logits, sims = model(x, text)
            sync(device)
            t1 = time.perf_counter()
            total, _, _, _ = ref.tgcnet_loss(cfg["loss"], logits, sims, mask)
            sync(device)
            t2 = time.perf_counter()
            total.backward()
            sync(device)
            t3 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            sync(device)
            t4 = time.perf_counter()
            if i >= a.warmup:
                totals.append((t4 - t0) * 1e3)
                for v, (u, w) in zip(phase_ms, [(t0, t1), (t1, t2), (t2, t3), (t3, t4)]):
                    v.append((w - u) * 1e3)
        train_step = timing(totals)
        train_phases = [{"stage": n, "median_ms": statistics.median(v)}
                        for n, v in zip(["forward", "loss", "backward", "optimizer (clip + AdamW)"], phase_ms)]
        peak_rss_train_mb = peak_rss_mb()
        if device.type == "cuda":
            peak_gpu_train_mb = torch.cuda.max_memory_allocated(device) / 2**20

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {
        "config": name,
        "device": f"torch {device} ({dev_name})",
        "threads": torch.get_num_threads(),
        "image_size": s,
        "total_params": total_params,
        "trainable_params": trainable_params,
        "latency_batch": a.latency_batch,
        "inference_latency": inference_latency,
        "stages": stages,
        "throughput_batch": a.throughput_batch,
        "inference_throughput": inference_throughput,
        "images_per_s": images_per_s,
        "train_batch": a.train_batch,
        "train_step": train_step,
        "train_phases": train_phases,
        "peak_rss_inference_mb": peak_rss_inference_mb,
        "peak_rss_train_mb": peak_rss_train_mb,
        "framework": f"pytorch {torch.__version__}",
        "peak_gpu_inference_mb": peak_gpu_inference_mb,
        "peak_gpu_train_mb": peak_gpu_train_mb,
    }
    if a.json:
        print(json.dumps(report, indent=2))
        return

    def t(x):
        return f"{x['median_ms']:9.1f} ms  (min {x['min_ms']:.1f}, max {x['max_ms']:.1f}, {x['runs']} runs)"

    def mb(x):
        return "n/a" if x is None else f"{x:.0f} MiB"

    print(f"{name} at {s}px on {report['device']} ({report['threads']} threads): {total_params:,} parameters, "
          f"{trainable_params:,} trainable")
    print(f"inference, batch {a.latency_batch:<2}     {t(inference_latency)}")
    for st in stages:
        print(f"  {st['stage']:<32} {st['median_ms']:9.1f} ms")
    print(f"inference, batch {a.throughput_batch:<2}     {t(inference_throughput)}  = {images_per_s:.1f} images/s")
    print(f"train step, batch {a.train_batch:<2}    {t(train_step)}" if train_step else "train step: skipped")
    for st in train_phases:
        print(f"  {st['stage']:<32} {st['median_ms']:9.1f} ms")
    line = f"peak RSS: inference {mb(peak_rss_inference_mb)}, training {mb(peak_rss_train_mb)}"
    if device.type == "cuda":
        line += f"; peak GPU: inference {mb(peak_gpu_inference_mb)}, training {mb(peak_gpu_train_mb)}"
    print(line)


if __name__ == "__main__":
    main()
