#!/usr/bin/env python3
"""Writes the PyTorch-parity fixture of the Rust TGC-Net forward pass: crates/model/tests/fixtures/reference/.

1. Builds the tiny preset in the PyTorch reference (scripts/reference/tgcnet_ref.py) with random weights and
   perturbs every parameter (zero-initialised adapters' `up`, SSE's α and gate, DATE's γ, FiLM and the
   similarity bias included, so that every path is active), then rounds every weight to float16.
2. Saves the weights as params.safetensors in our checkpoint layout (the keys and shapes of
   `TgcNet::checkpoint_params`, metadata `format = "tgcnet-params"` and `tgcnet_config` = the config as
   TOML, as `TgcNet::save_params` writes), stored as f16 (exact: the weights are f16-rounded; the Rust reader
   widens f16 to f32), so `TgcNet::load_params_file` loads it. Rows of the 49408×16 token embedding that no
   fixture text uses are zero, so the file compresses to a few hundred kB in git.
3. Writes knowledge.toml (8 entries of knowledge/default.toml, the fixture's knowledge base), inputs.json
   (captions, their CLIP ids from open_clip's tokenizer, the passage texts and ids, the matched passages of
   each case) and expected.safetensors (images, logits and similarity maps of each case, and intermediates:
   the SSE pyramid before VLCM, DATE's tokens and sentence, the knowledge cache).

Cases: "both" (both reports have matched passages, partly shared: masking inside the union) and "one"
(the second report has none: DATE must leave it unchanged). A variant of the config on the same weights,
"variant.*" (exact GELU in the towers and a trainable text tower, so that the passages are re-encoded in
the forward pass instead of cached: the `small` preset's paths), is computed with the "both" matches.

Run from the repository root (never needed by the build or the tests):
    /work/venv/py/bin/python scripts/reference/make_parity_fixture.py [--tgcnet target/release/tgcnet]
The config is the tiny preset as `tgcnet info --preset tiny --json --show-config` prints it (or the stored
scripts/reference/presets/tiny.toml without a binary).
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tgcnet_ref as ref  # noqa: E402

OUT = "crates/model/tests/fixtures/reference"
CAPTIONS = [
    "Bilateral pulmonary infection, two infected areas, middle left lung and lower right lung.",
    "Unilateral pulmonary infection, one infected area, upper right lung.",
]
# The fixture's knowledge base, in this order (passage index = position).
TERMS = ["bilateral", "middle left lung", "lower right lung", "two infected areas", "pulmonary infection",
         "unilateral", "one infected area", "upper right lung"]
# What `KnowledgeBase::match_report` finds in CAPTIONS with that base (the Rust test checks it).
MATCHED = [[0, 1, 2, 3, 4], [4, 5, 6, 7]]
CASES = {"both": MATCHED, "one": [MATCHED[0], []]}
# Config changes of the variant (same parameters, same checkpoint keys).
VARIANT = {"activation": "gelu", "freeze_text": False}


def toml_entry(e):
    lines = ["[[entry]]", f"term = {json.dumps(e['term'])}"]
    if "class" in e:
        lines.append(f"class = {json.dumps(e['class'])}")
    if e.get("aliases"):
        lines.append("aliases = [" + ", ".join(json.dumps(a) for a in e["aliases"]) + "]")
    lines += [f"xray = {json.dumps(e['xray'])}", f"ct = {json.dumps(e['ct'])}"]
    return "\n".join(lines) + "\n"


@torch.no_grad()
def perturb(model, used_tokens):
    for name, p in model.named_parameters():
        was_zero = bool((p == 0).all())
        p.add_(torch.randn_like(p) * (0.5 if was_zero else 0.1))
        if name == "text.embeddings.token_embedding.weight":
            keep = torch.zeros(p.shape[0], dtype=torch.bool)
            keep[used_tokens] = True
            p[~keep] = 0.0
        p.copy_(p.half().float())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tgcnet", help="tgcnet binary (default: target/release/tgcnet, target/debug/tgcnet)")
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    cfg = ref.preset_config("tiny", a.tgcnet)
    ctx = cfg["clip"]["model"]["text"]["context_length"]
    s = cfg["image_size"]

    by_term = {e["term"]: e for e in ref.knowledge_entries()}
    entries = [by_term[t] for t in TERMS]
    with open(f"{a.out}/knowledge.toml", "w", encoding="utf-8") as f:
        f.write("# Knowledge base of the reference-parity fixture: 8 entries copied from knowledge/default.toml\n"
                "# by scripts/reference/make_parity_fixture.py.\n\n")
        f.write("\n".join(toml_entry(e) for e in entries))
    passages = [ref.passage_text(e) for e in entries]
    passage_ids = ref.tokenize(passages, ctx)
    ids = ref.tokenize(CAPTIONS, ctx)

    torch.manual_seed(0)
    model = ref.TgcNet(cfg).eval()
    used = torch.unique(torch.cat([ids.flatten(), passage_ids.flatten()]))
    perturb(model, used)
    model.set_passages(passage_ids)

    state = {k: v.detach().contiguous().half() for k, v in model.state_dict().items()}
    meta = {"format": "tgcnet-params", "tgcnet_config": ref.config_toml(cfg)}
    save_file(state, f"{a.out}/params.safetensors", metadata=meta)

    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, s, s, generator=g)
    expected = {"images": images}
    with torch.no_grad():
        for case, matched in CASES.items():
            logits, sims = model(images, ref.TextBatch(ids, matched))
            expected[f"{case}.logits"] = logits
            for scale, sim in zip(cfg["vlcm"]["scales"], sims):
                expected[f"{case}.sim{scale}"] = sim
        pyr = model.sse(model.vision, images)
        for k in ("p2", "p4", "p8", "p16"):
            expected[f"pyramid.{k}"] = getattr(pyr, k)
        passages_t, rows = model.batch_passages(MATCHED)
        feats = model.date(model.text, ids, passages_t, rows)
        expected["date.tokens"] = feats.tokens
        expected["date.sentence"] = feats.sentence
        expected["knowledge_cache"] = model.knowledge_cache

        vcfg = json.loads(json.dumps(cfg))
        vcfg["clip"]["model"]["activation"] = VARIANT["activation"]
        vcfg["clip"]["freeze_text"] = VARIANT["freeze_text"]
        variant = ref.TgcNet(vcfg).eval()
        variant.load_checkpoint(state)
        variant.set_passages(passage_ids)
        assert variant.knowledge_cache is None, "trainable text tower: passages encoded per batch"
        logits, sims = variant(images, ref.TextBatch(ids, MATCHED))
        expected["variant.logits"] = logits
        for scale, sim in zip(vcfg["vlcm"]["scales"], sims):
            expected[f"variant.sim{scale}"] = sim
    save_file({k: v.contiguous().float() for k, v in expected.items()}, f"{a.out}/expected.safetensors")

    inputs = {
        "captions": CAPTIONS,
        "ids": ids.tolist(),
        "passages": passages,
        "passage_ids": passage_ids.tolist(),
        "knowledge": CASES,
        "vlcm_scales": cfg["vlcm"]["scales"],
        "variant": VARIANT,
    }
    with open(f"{a.out}/inputs.json", "w", encoding="utf-8") as f:
        json.dump(inputs, f)
        f.write("\n")
    for case in [*CASES, "variant"]:
        lg = expected[f"{case}.logits"]
        print(f"{case}: logits mean {lg.mean():.4f} std {lg.std():.4f} range [{lg.min():.3f}, {lg.max():.3f}]")
    print(f"wrote {a.out}: {len(state)} tensors")


if __name__ == "__main__":
    main()
