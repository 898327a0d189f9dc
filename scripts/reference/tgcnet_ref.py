#!/usr/bin/env python3
"""PyTorch reference implementation of *our* TGC-Net (the Rust/burn model of crates/model and crates/clip).

Same maths and the same module tree as the Rust code, module by module:

    TgcNet                    crates/model/src/tgcnet.rs
    ├─ vision  ClipVision     crates/clip/src/vision.rs, nn.rs
    ├─ text    ClipText       crates/clip/src/text.rs, nn.rs   (None when text = false)
    ├─ sse     Sse            crates/model/src/sse.rs, adapter.rs, blocks.rs
    ├─ date    Date           crates/model/src/date.rs, attention.rs
    ├─ vlcm    [Vlcm]         crates/model/src/vlcm.rs          (one per vlcm.scales, VLCM on)
    ├─ concat  [ConcatFusion] crates/model/src/vlcm.rs          (one per vlcm.scales, VLCM off)
    └─ decoder Decoder        crates/model/src/decoder.rs
    + tgcnet_loss             crates/model/src/loss.rs

`model.state_dict()` has exactly the keys *and shapes* of our Rust checkpoints (`TgcNet::checkpoint_params` /
`all_params`, burn module paths): the building blocks below store their tensors the way burn does, so no
renaming or transposition is needed in either direction:

    Linear      `weight` [in, out] (burn's layout; PyTorch's nn.Linear is [out, in]), `bias` [out]
    LayerNorm   `gamma`, `beta` (PyTorch: weight, bias)
    GroupNorm   `gamma`, `beta`
    Embedding   `weight` [n, d]
    Conv2d      `weight` [out, in, kh, kw], `bias` [out]: the same as PyTorch (torch.nn.Conv2d is used as is)

The compute is PyTorch's own kernels (F.linear, F.layer_norm, F.group_norm, F.conv2d, F.interpolate,
scaled_dot_product_attention), so a parity test compares burn's ops against PyTorch's.

Configuration: the resolved config the Rust CLI prints, as TOML (`tgcnet info --preset tiny --show-config`,
the part after the table), as JSON (`tgcnet info --preset tiny --json --show-config`, its "config" object), or
the `tgcnet_config` metadata of a checkpoint; see `load_config`.

Text: the model takes CLIP BPE ids ([B, L], 0-padded after the end token), as the Rust `TextBatch` does; the
tokenizer is not re-implemented (open_clip.tokenize gives the same ids as ours). DATE's knowledge passages
are given as ids too (`set_passages`), with the matched passage indices of every report (`knowledge`), as
`TextBatch::knowledge`.

Run `python scripts/reference/tgcnet_ref.py --preset tiny` for a smoke test (needs the tgcnet binary for
--preset, or --config FILE).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_LOG_TEMPERATURE = math.log(100.0)
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# ---------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------


def load_config(source: str) -> dict:
    """The resolved TGC-Net config as a nested dict, from: a TOML file or string (what `tgcnet info
    --show-config` prints after its table; a leading non-TOML table is skipped), a JSON file or string
    (`tgcnet info --json --show-config`: its "config" object, or a bare config object), or a checkpoint
    (`.safetensors`: its `tgcnet_config` metadata)."""
    text = source
    if os.path.exists(source):
        if source.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(source, "pt") as f:
                meta = f.metadata() or {}
            if "tgcnet_config" not in meta:
                raise ValueError(f"{source}: no tgcnet_config metadata")
            return _with_defaults(tomllib.loads(meta["tgcnet_config"]))
        with open(source, encoding="utf-8") as f:
            text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("{"):
        obj = json.loads(stripped)
        return _with_defaults(obj.get("config", obj))
    # `tgcnet info --show-config` prints the parameter table first: the TOML starts at `image_size = `.
    start = text.find("image_size =")
    if start < 0:
        raise ValueError("no TGC-Net config found (expected TOML with `image_size = ...` or JSON)")
    return _with_defaults(tomllib.loads(text[start:]))


def find_tgcnet(explicit: str | None = None) -> str | None:
    """The tgcnet binary: `explicit`, $TGCNET, target/release/tgcnet, target/debug/tgcnet or `tgcnet` on PATH."""
    candidates = [explicit, os.environ.get("TGCNET"), os.path.join(REPO, "target/release/tgcnet"),
                  os.path.join(REPO, "target/debug/tgcnet"), shutil.which("tgcnet")]
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def preset_config(name: str, tgcnet: str | None = None) -> dict:
    """A preset's resolved config, asked from the tgcnet binary (`tgcnet info --preset NAME --json
    --show-config`, see `find_tgcnet`); without one, the stored copy scripts/reference/presets/NAME.toml."""
    exe = find_tgcnet(tgcnet)
    if exe:
        out = subprocess.run([exe, "info", "--preset", name, "--json", "--show-config"],
                             check=True, capture_output=True, text=True).stdout
        return load_config(out)
    stored = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets", f"{name}.toml")
    if os.path.exists(stored):
        print(f"note: no tgcnet binary found, using {stored}", file=sys.stderr)
        return load_config(stored)
    raise FileNotFoundError(f"no tgcnet binary and no stored preset {stored}")


def _with_defaults(cfg: dict) -> dict:
    """Fills the keys serde fills when absent (the printed config has them all, except optional ones)."""
    cfg = json.loads(json.dumps(cfg))  # deep copy
    clip = cfg["clip"]
    clip.setdefault("freeze_vision", True)
    clip.setdefault("freeze_text", True)
    clip["model"].setdefault("activation", "quick_gelu")
    clip["model"].setdefault("layer_norm_eps", 1e-5)
    cfg.setdefault("text", True)
    cfg["date"].setdefault("knowledge_file", None)
    return cfg


def config_toml(cfg: dict) -> str:
    """The config as TOML, in the layout of the Rust `TgcNetConfig::to_toml` (keys in struct order, as
    `toml::to_string_pretty` writes them), for a checkpoint's `tgcnet_config` metadata."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            return repr(v) if v != int(v) or abs(v) >= 1e16 else f"{v:.1f}"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[\n" + "".join(f"    {val(x)},\n" for x in v) + "]"
        raise TypeError(type(v))

    out: list[str] = []

    def table(name: str, d: dict):
        scalars = [(k, v) for k, v in d.items() if not isinstance(v, dict) and v is not None]
        subs = [(k, v) for k, v in d.items() if isinstance(v, dict)]
        if name and scalars:
            out.append(f"\n[{name}]")
        for k, v in scalars:
            out.append(f"{k} = {val(v)}")
        for k, v in subs:
            table(f"{name}.{k}" if name else k, v)

    table("", cfg)
    return "\n".join(out).lstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------------------
# burn-layout building blocks
# ---------------------------------------------------------------------------------------------------------


class Linear(nn.Module):
    """burn's `Linear`: `y = x W + b`, W [in, out]; init U(-1/sqrt(in), 1/sqrt(in)) (or zeros)."""

    def __init__(self, d_in: int, d_out: int, bias: bool = True, zeros: bool = False):
        super().__init__()
        k = 1.0 / math.sqrt(d_in)
        w = torch.zeros(d_in, d_out) if zeros else torch.empty(d_in, d_out).uniform_(-k, k)
        self.weight = nn.Parameter(w)
        if bias:
            b = torch.zeros(d_out) if zeros else torch.empty(d_out).uniform_(-k, k)
            self.bias = nn.Parameter(b)
        else:
            self.bias = None

    def forward(self, x):
        return F.linear(x, self.weight.t(), self.bias)


class LayerNorm(nn.Module):
    """burn's `LayerNorm` (`gamma`, `beta`) over the last axis."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(d))
        self.beta = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.gamma, self.beta, self.eps)


class GroupNorm(nn.Module):
    """burn's `GroupNorm` (`gamma`, `beta`), eps 1e-5."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.groups = groups
        self.eps = eps

    def forward(self, x):
        return F.group_norm(x, self.groups, self.gamma, self.beta, self.eps)


class Embedding(nn.Module):
    """burn's `Embedding`: `weight` [n, d], init N(0, 1)."""

    def __init__(self, n: int, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, d))

    def forward(self, ids):
        return F.embedding(ids, self.weight)


def conv2d(c_in, c_out, k, stride=1, padding=0, bias=True):
    """burn's `Conv2d` has PyTorch's layout and its default init (Kaiming uniform, a = sqrt(5))."""
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=bias)


def attention(q, k, v, ignore=None, causal=False):
    """burn's `attention`: softmax(q kᵀ / sqrt(dh)) v. q: [B, H, Nq, dh]; k, v: [B, H, Nk, dh];
    ignore: [B, Nk] bool, True for keys not to attend to. A query whose keys are all ignored gets a zero
    output (burn's behaviour; PyTorch would give NaN)."""
    if ignore is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    keep = ~ignore  # [B, Nk]
    any_keep = keep.any(dim=1)  # [B]
    keep = keep | ~any_keep[:, None]  # fully ignored rows: attend anywhere, zeroed below
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :], is_causal=causal)
    return o * any_keep.to(o.dtype)[:, None, None, None]


# ---------------------------------------------------------------------------------------------------------
# CLIP towers (crates/clip/src/nn.rs, vision.rs, text.rs)
# ---------------------------------------------------------------------------------------------------------


class ClipAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.q_proj = Linear(width, width)
        self.k_proj = Linear(width, width)
        self.v_proj = Linear(width, width)
        self.out_proj = Linear(width, width)
        self.num_heads = heads

    def forward(self, x, causal):
        b, l, d = x.shape
        h = self.num_heads

        def split(t):
            return t.reshape(b, l, h, d // h).transpose(1, 2)

        o = attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)), causal=causal)
        return self.out_proj(o.transpose(1, 2).reshape(b, l, d))


class ClipMlp(nn.Module):
    def __init__(self, width, mlp_dim, quick_gelu):
        super().__init__()
        self.fc1 = Linear(width, mlp_dim)
        self.fc2 = Linear(mlp_dim, width)
        self.quick_gelu = quick_gelu

    def forward(self, x):
        h = self.fc1(x)
        h = h * torch.sigmoid(1.702 * h) if self.quick_gelu else F.gelu(h)
        return self.fc2(h)


class ClipEncoderLayer(nn.Module):
    def __init__(self, width, heads, mlp_dim, quick_gelu, eps):
        super().__init__()
        self.self_attn = ClipAttention(width, heads)
        self.layer_norm1 = LayerNorm(width, eps)
        self.mlp = ClipMlp(width, mlp_dim, quick_gelu)
        self.layer_norm2 = LayerNorm(width, eps)

    def forward(self, x, causal):
        x = x + self.self_attn(self.layer_norm1(x), causal)
        return x + self.mlp(self.layer_norm2(x))


class ClipEncoder(nn.Module):
    def __init__(self, width, layers, heads, mlp_dim, quick_gelu, eps):
        super().__init__()
        self.layers = nn.ModuleList(
            [ClipEncoderLayer(width, heads, mlp_dim, quick_gelu, eps) for _ in range(layers)])

    def forward(self, x, causal, taps=(), hook=None):
        """taps: 1-based block indices, read after the hook. Returns (last, [tap...])."""
        found = [None] * len(taps)
        for i, layer in enumerate(self.layers):
            x = layer(x, causal)
            if hook is not None:
                x = hook(i + 1, x)
            for j, t in enumerate(taps):
                if t == i + 1:
                    found[j] = x
        return x, [f if f is not None else x for f in found]


def _quick(clip_cfg):
    return clip_cfg.get("activation", "quick_gelu") == "quick_gelu"


class ClipVisionEmbeddings(nn.Module):
    def __init__(self, v, width):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.randn(width) * width ** -0.5)
        self.patch_embedding = conv2d(3, width, v["patch_size"], stride=v["patch_size"], bias=False)
        grid = v["image_size"] // v["patch_size"]
        self.position_embedding = Embedding(grid * grid + 1, width)
        self.patch_size = v["patch_size"]

    def positions(self, gh, gw):
        table = self.position_embedding.weight
        n, d = table.shape
        g = round(math.sqrt(n - 1))
        if g == gh and g == gw:
            return table
        grid = table[1:].reshape(1, g, g, d).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        return torch.cat([table[:1], grid.permute(0, 2, 3, 1).reshape(gh * gw, d)], 0)

    def forward(self, pixels):
        patches = self.patch_embedding(pixels)
        b, d, gh, gw = patches.shape
        patches = patches.flatten(2).transpose(1, 2)
        cls = self.class_embedding.reshape(1, 1, d).expand(b, 1, d)
        return torch.cat([cls, patches], 1) + self.positions(gh, gw)[None]


class ClipVision(nn.Module):
    """HF `CLIPVisionTransformer` (field `pre_layrnorm` keeps HF's spelling)."""

    def __init__(self, clip_cfg):
        super().__init__()
        v, eps = clip_cfg["vision"], clip_cfg["layer_norm_eps"]
        self.embeddings = ClipVisionEmbeddings(v, v["width"])
        self.pre_layrnorm = LayerNorm(v["width"], eps)
        self.encoder = ClipEncoder(v["width"], v["layers"], v["heads"], v["mlp_dim"], _quick(clip_cfg), eps)
        self.post_layernorm = LayerNorm(v["width"], eps)

    def forward(self, pixels, taps=(), hook=None):
        """Returns (taps, pooled, last_hidden, grid)."""
        p = self.embeddings.patch_size
        x = self.pre_layrnorm(self.embeddings(pixels))
        last, found = self.encoder(x, False, taps, hook)
        pooled = self.post_layernorm(last[:, 0])
        return found, pooled, last, (pixels.shape[2] // p, pixels.shape[3] // p)


class ClipTextEmbeddings(nn.Module):
    def __init__(self, t):
        super().__init__()
        self.token_embedding = Embedding(t["vocab_size"], t["width"])
        self.position_embedding = Embedding(t["context_length"], t["width"])


class ClipText(nn.Module):
    def __init__(self, clip_cfg):
        super().__init__()
        t, eps = clip_cfg["text"], clip_cfg["layer_norm_eps"]
        self.embeddings = ClipTextEmbeddings(t)
        self.encoder = ClipEncoder(t["width"], t["layers"], t["heads"], t["mlp_dim"], _quick(clip_cfg), eps)
        self.final_layer_norm = LayerNorm(t["width"], eps)

    def forward(self, ids, hook=None):
        """ids: [B, L] → (tokens [B, L, D] after the final LN, pooled [B, D] at the end token, eot [B])."""
        l = ids.shape[1]
        pos = torch.arange(l, device=ids.device)
        x = self.embeddings.token_embedding(ids) + self.embeddings.position_embedding(pos)[None]
        last, _ = self.encoder(x, True, (), hook)
        tokens = self.final_layer_norm(last)
        eot = ids.argmax(dim=1)
        pooled = tokens[torch.arange(ids.shape[0], device=ids.device), eot]
        return tokens, pooled, eot


# ---------------------------------------------------------------------------------------------------------
# Adapters, blocks (crates/model/src/adapter.rs, blocks.rs, attention.rs)
# ---------------------------------------------------------------------------------------------------------


class Adapter(nn.Module):
    def __init__(self, dim, width, scale):
        super().__init__()
        self.down = Linear(dim, width)
        self.up = Linear(width, dim, zeros=True)
        self.scale = scale

    def forward(self, x):
        return x + self.up(F.gelu(self.down(x))) * self.scale


class AdapterStack(nn.Module):
    def __init__(self, dim, blocks, width, scale):
        super().__init__()
        self.layers = nn.ModuleList([Adapter(dim, width, scale) for _ in range(blocks)])

    def apply_at(self, layer, x):
        i = layer - 1
        return self.layers[i](x) if 0 <= i < len(self.layers) else x


def norm_groups(c):
    return next(g for g in (8, 4, 2, 1) if c % g == 0)


class ConvNormAct(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv = conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm = GroupNorm(norm_groups(c_out), c_out)

    def forward(self, x):
        return F.relu(self.norm(self.conv(x)))


class DoubleConv(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.first = ConvNormAct(c_in, c_out, stride)
        self.second = ConvNormAct(c_out, c_out, 1)

    def forward(self, x):
        return self.second(self.first(x))


def resize(x, size):
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def tokens_to_map(x, h, w):
    b, _, d = x.shape
    return x.transpose(1, 2).reshape(b, d, h, w)


def map_to_tokens(x):
    b, d, h, w = x.shape
    return x.reshape(b, d, h * w).transpose(1, 2)


class CrossAttention(nn.Module):
    def __init__(self, d_query, d_context, dim, heads):
        super().__init__()
        self.q_proj = Linear(d_query, dim)
        self.k_proj = Linear(d_context, dim)
        self.v_proj = Linear(d_context, dim)
        self.out_proj = Linear(dim, d_query)
        self.heads = heads

    def forward(self, x, context, ignore=None):
        b, nq, _ = x.shape
        nk = context.shape[1]
        h = self.heads
        q = self.q_proj(x)
        dim = q.shape[2]

        def split(t, n):
            return t.reshape(b, n, h, dim // h).transpose(1, 2)

        o = attention(split(q, nq), split(self.k_proj(context), nk), split(self.v_proj(context), nk), ignore)
        return self.out_proj(o.transpose(1, 2).reshape(b, nq, dim))


# ---------------------------------------------------------------------------------------------------------
# SSE (crates/model/src/sse.rs)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Pyramid:
    p2: torch.Tensor | None
    p4: torch.Tensor
    p8: torch.Tensor
    p16: torch.Tensor

    def level(self, scale):
        return {4: self.p4, 8: self.p8, 16: self.p16}.get(scale)

    def set_level(self, scale, x):
        setattr(self, f"p{scale}", x)


class CnnBranch(nn.Module):
    def __init__(self, c2, c4, c8, c16):
        super().__init__()
        self.stem = DoubleConv(3, c2, 2)
        self.down4 = DoubleConv(c2, c4, 2)
        self.down8 = DoubleConv(c4, c8, 2)
        self.down16 = DoubleConv(c8, c16, 2)

    def forward(self, x):
        x2 = self.stem(x)
        x4 = self.down4(x2)
        x8 = self.down8(x4)
        return x2, x4, x8, self.down16(x8)


class FusionLevel(nn.Module):
    def __init__(self, vit_width, channels, with_cnn):
        super().__init__()
        self.norm = LayerNorm(vit_width)
        self.proj = Linear(vit_width, channels)
        self.gate = conv2d(2 * channels, channels, 1) if with_cnn else None
        self.alpha = nn.Parameter(torch.zeros(channels)) if with_cnn else None

    def forward(self, tap, grid, cnn, size):
        v = self.proj(self.norm(tap[:, 1:]))
        v = resize(tokens_to_map(v, grid[0], grid[1]), size)
        if cnn is not None and self.gate is not None:
            g = torch.sigmoid(self.gate(torch.cat([cnn, v], 1)))
            return cnn + g * v * self.alpha.reshape(1, -1, 1, 1)
        if cnn is not None:
            return cnn + v
        return v


class Sse(nn.Module):
    def __init__(self, cfg, vit_width, vit_layers):
        super().__init__()
        s = cfg
        c2, c4, c8, c16 = s["cnn_channels"]
        self.adapters = (AdapterStack(vit_width, vit_layers, s["adapter_width"], s["adapter_scale"])
                         if s["adapters"] else None)
        self.cnn = CnnBranch(c2, c4, c8, c16) if s["cnn"] else None
        self.fuse4 = FusionLevel(vit_width, c4, s["cnn"])
        self.fuse8 = FusionLevel(vit_width, c8, s["cnn"])
        self.fuse16 = FusionLevel(vit_width, c16, s["cnn"])
        self.taps = tuple(s["taps"])

    def forward(self, vit: ClipVision, pixels):
        hook = (lambda layer, x: self.adapters.apply_at(layer, x)) if self.adapters is not None else None
        taps, _, _, grid = vit(pixels, self.taps, hook)
        cnn = self.cnn(pixels) if self.cnn is not None else None
        return self.fuse(taps, grid, cnn, pixels.shape[2:])

    def fuse(self, taps, grid, cnn, image):
        def size(k):
            return (-(-image[0] // k), -(-image[1] // k))

        t4, t8, t16 = taps
        p2, c4, c8, c16 = cnn if cnn is not None else (None, None, None, None)
        return Pyramid(p2, self.fuse4(t4, grid, c4, size(4)), self.fuse8(t8, grid, c8, size(8)),
                       self.fuse16(t16, grid, c16, size(16)))


# ---------------------------------------------------------------------------------------------------------
# DATE (crates/model/src/date.rs)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class TextFeatures:
    tokens: torch.Tensor  # [B, L, Dt]
    sentence: torch.Tensor  # [B, Dt]
    eot: torch.Tensor  # [B]
    padding: torch.Tensor  # [B, L] bool, True after the end token


class KnowledgeFusion(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.attn = CrossAttention(width, width, width, heads)
        self.gate = nn.Parameter(torch.zeros(width))

    def forward(self, tokens, passages, matched):
        """tokens: [B, L, Dt]; passages: [M, Dt]; matched[b]: rows of `passages` report b attends to."""
        b, _, d = tokens.shape
        m = passages.shape[0]
        if m == 0 or b == 0:
            return tokens
        ignore = torch.ones(b, m, dtype=torch.bool, device=tokens.device)
        has = torch.zeros(b, dtype=tokens.dtype, device=tokens.device)
        for row, idx in enumerate(matched[:b]):
            for j in idx:
                if j < m:
                    ignore[row, j] = False
                    has[row] = 1.0
        if not bool((has != 0).any()):
            return tokens
        context = passages[None].expand(b, m, d)
        delta = self.attn(tokens, context, ignore)
        return tokens + delta * has[:, None, None] * self.gate.reshape(1, 1, d)


class Date(nn.Module):
    def __init__(self, cfg, text_width, text_layers):
        super().__init__()
        self.adapters = (AdapterStack(text_width, text_layers, cfg["adapter_width"], cfg["adapter_scale"])
                         if cfg["adapters"] else None)
        self.knowledge = KnowledgeFusion(text_width, cfg["heads"]) if cfg["knowledge"] else None

    def forward(self, text: ClipText, ids, passages, matched):
        b, l = ids.shape
        hook = (lambda layer, x: self.adapters.apply_at(layer, x)) if self.adapters is not None else None
        tokens, _, eot = text(ids, hook)
        if self.knowledge is not None and passages is not None:
            tokens = self.knowledge(tokens, passages, matched)
        sentence = tokens[torch.arange(b, device=ids.device), eot]
        padding = torch.arange(l, device=ids.device)[None, :] > eot[:, None]
        return TextFeatures(tokens, sentence, eot, padding)


def encode_passages(text: ClipText, ids, chunk=16):
    """Pooled, pre-projection passage features (tower without adapters). ids: [K, L] → [K, Dt]."""
    return torch.cat([text(ids[s:s + chunk])[1] for s in range(0, ids.shape[0], chunk)], 0)


# ---------------------------------------------------------------------------------------------------------
# VLCM (crates/model/src/vlcm.rs)
# ---------------------------------------------------------------------------------------------------------


def unit(x):
    return x / (x.pow(2).sum(dim=2, keepdim=True) + 1e-12).sqrt()


class Vlcm(nn.Module):
    def __init__(self, cfg, channels, text_width):
        super().__init__()
        d = cfg["dim"]
        self.pixel_proj = Linear(channels, d)
        self.text_proj = Linear(text_width, d)
        self.log_temperature = nn.Parameter(torch.full((1,), math.log(cfg["init_temperature"])))
        self.sim_bias = nn.Parameter(torch.zeros(1))
        self.pixel_norm = LayerNorm(d)
        self.text_norm = LayerNorm(d)
        self.pixels_from_text = CrossAttention(d, d, d, cfg["heads"])
        self.text_query_norm = LayerNorm(d)
        self.pixel_context_norm = LayerNorm(d)
        self.text_from_pixels = CrossAttention(d, d, d, cfg["heads"])
        self.film_scale = Linear(d, d, zeros=True)
        self.film_shift = Linear(d, d, zeros=True)
        self.out_proj = Linear(d, channels)

    def forward(self, features, text: TextFeatures):
        b, _, h, w = features.shape
        x = self.pixel_proj(map_to_tokens(features))  # [B, hw, d]
        t = self.text_proj(text.tokens)  # [B, L, d]
        d = x.shape[2]
        s = self.text_proj(text.sentence).reshape(b, 1, d)
        cos = unit(x) @ unit(s).transpose(1, 2)  # [B, hw, 1]
        tau = self.log_temperature.clamp(max=MAX_LOG_TEMPERATURE).exp().reshape(1, 1, 1)
        sim = tokens_to_map(cos * tau + self.sim_bias.reshape(1, 1, 1), h, w)  # [B, 1, h, w]
        x = x + self.pixels_from_text(self.pixel_norm(x), self.text_norm(t), text.padding)
        t = t + self.text_from_pixels(self.text_query_norm(t), self.pixel_context_norm(x), None)
        s = t[torch.arange(b, device=t.device), text.eot][:, None]  # [B, 1, d]
        x = x * (self.film_scale(s) + 1.0) + self.film_shift(s)
        y = features + tokens_to_map(self.out_proj(x), h, w)
        return y * (torch.sigmoid(sim) + 1.0), sim


class ConcatFusion(nn.Module):
    def __init__(self, channels, text_width):
        super().__init__()
        self.proj = conv2d(channels + text_width, channels, 1)

    def forward(self, features, sentence):
        b, _, h, w = features.shape
        s = sentence[:, :, None, None].expand(b, sentence.shape[1], h, w)
        return self.proj(torch.cat([features, s], 1))


# ---------------------------------------------------------------------------------------------------------
# Decoder (crates/model/src/decoder.rs)
# ---------------------------------------------------------------------------------------------------------


class Decoder(nn.Module):
    def __init__(self, cfg, pyramid, skip2):
        super().__init__()
        c4, c8, c16 = pyramid
        d8, d4, d2 = cfg["channels"]
        self.up8 = DoubleConv(c16 + c8, d8, 1)
        self.up4 = DoubleConv(d8 + c4, d4, 1)
        self.up2 = DoubleConv(d4 + skip2, d2, 1)
        self.head = conv2d(d2, 1, 1)

    def forward(self, p: Pyramid, image):
        x = resize(p.p16, p.p8.shape[2:])
        x = self.up8(torch.cat([x, p.p8], 1))
        x = resize(x, p.p4.shape[2:])
        x = self.up4(torch.cat([x, p.p4], 1))
        if p.p2 is not None:
            x = torch.cat([resize(x, p.p2.shape[2:]), p.p2], 1)
        else:
            x = resize(x, (-(-image[0] // 2), -(-image[1] // 2)))
        return resize(self.head(self.up2(x)), image)


# ---------------------------------------------------------------------------------------------------------
# TGC-Net (crates/model/src/tgcnet.rs)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class TextBatch:
    """CLIP BPE ids [B, L] (0-padded after the end token) and the matched passage indices per report."""
    ids: torch.Tensor
    knowledge: list[list[int]] = field(default_factory=list)


class TgcNet(nn.Module):
    STAGES = ("image encoder (ViT + SSE)", "text encoder (text tower + DATE)", "VLCM / fusion", "decoder")

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        clip = cfg["clip"]["model"]
        v, t = clip["vision"], clip["text"]
        self.vision = ClipVision(clip)
        self.sse = Sse(cfg["sse"], v["width"], v["layers"])
        c = cfg["sse"]["cnn_channels"]
        pyramid = (c[1], c[2], c[3])
        level = {4: pyramid[0], 8: pyramid[1], 16: pyramid[2]}
        self.text = ClipText(clip) if cfg["text"] else None
        self.date = Date(cfg["date"], t["width"], t["layers"]) if cfg["text"] else None
        vl = cfg["vlcm"]
        on = cfg["text"] and vl["enabled"]
        self.vlcm = nn.ModuleList([Vlcm(vl, level[s], t["width"]) for s in vl["scales"]] if on else [])
        off = cfg["text"] and not vl["enabled"]
        self.concat = nn.ModuleList([ConcatFusion(level[s], t["width"]) for s in vl["scales"]] if off else [])
        self.decoder = Decoder(cfg["decoder"], pyramid, c[0] if cfg["sse"]["cnn"] else 0)
        # Knowledge passages: ids [K, L] and, with a frozen text tower, their cached features [K, Dt].
        # Plain attributes, not parameters or buffers: not in state_dict, as in the Rust checkpoints.
        self.passage_ids: torch.Tensor | None = None
        self.knowledge_cache: torch.Tensor | None = None
        self.apply_freeze()

    def apply_freeze(self):
        """Frozen towers get requires_grad = False (the Rust `no_grad`)."""
        clip = self.cfg["clip"]
        for p in self.vision.parameters():
            p.requires_grad_(not clip["freeze_vision"])
        if self.text is not None:
            for p in self.text.parameters():
                p.requires_grad_(not clip["freeze_text"])

    def num_passages(self):
        return 0 if self.passage_ids is None else self.passage_ids.shape[0]

    def set_passages(self, ids: torch.Tensor | None):
        """Knowledge passage ids [K, L] (what `TgcNet::new_with` tokenises from the knowledge base)."""
        has_knowledge = self.date is not None and self.date.knowledge is not None
        self.passage_ids = ids if (ids is not None and has_knowledge and ids.shape[0] > 0) else None
        self.refresh_knowledge_cache()

    @torch.no_grad()
    def refresh_knowledge_cache(self):
        """Re-encodes the passages with the frozen text tower (call after loading tower weights)."""
        if self.text is not None and self.passage_ids is not None and self.cfg["clip"]["freeze_text"]:
            self.passage_ids = self.passage_ids.to(self.text.final_layer_norm.gamma.device)
            self.knowledge_cache = encode_passages(self.text, self.passage_ids).detach()
        else:
            self.knowledge_cache = None

    def load_checkpoint(self, state: dict, strict: bool = True):
        """Loads a Rust checkpoint's tensors (a dict key → tensor) and re-encodes the passages."""
        result = self.load_state_dict({k: v.float() for k, v in state.items()}, strict=strict)
        self.refresh_knowledge_cache()
        return result

    def batch_passages(self, knowledge):
        k = self.num_passages()
        union = sorted({i for m in knowledge for i in m if i < k})
        if not union or self.date is None or self.date.knowledge is None:
            return None, []
        row = {i: r for r, i in enumerate(union)}
        matched = [[row[i] for i in m if i in row] for m in knowledge]
        if self.knowledge_cache is not None:
            index = torch.tensor(union, device=self.knowledge_cache.device)
            return self.knowledge_cache[index], matched
        if self.passage_ids is not None and self.text is not None:
            index = torch.tensor(union, device=self.passage_ids.device)
            return encode_passages(self.text, self.passage_ids[index]), matched
        return None, []

    def forward(self, images, text: TextBatch, probe=None):
        """images: [B, 3, S, S], CLIP-normalised. Returns (logits [B, 1, S, S], [similarity maps])."""
        probe = probe or (lambda stage: None)
        h, w = images.shape[2:]
        pyramid = self.sse(self.vision, images)
        probe(self.STAGES[0])
        sims = []
        if self.text is not None and self.date is not None:
            passages, matched = self.batch_passages(text.knowledge)
            features = self.date(self.text, text.ids, passages, matched)
            probe(self.STAGES[1])
            for v, scale in zip(self.vlcm, self.cfg["vlcm"]["scales"]):
                level = pyramid.level(scale)
                if level is not None:
                    y, s = v(level, features)
                    pyramid.set_level(scale, y)
                    sims.append(s)
            for c, scale in zip(self.concat, self.cfg["vlcm"]["scales"]):
                level = pyramid.level(scale)
                if level is not None:
                    pyramid.set_level(scale, c(level, features.sentence))
        probe(self.STAGES[2])
        logits = self.decoder(pyramid, (h, w))
        probe(self.STAGES[3])
        return logits, sims

    def trainable_state(self):
        """Keys of the trainable parameters (TgcNetConfig::is_trainable_key)."""
        return {k for k, p in self.named_parameters() if p.requires_grad}


# ---------------------------------------------------------------------------------------------------------
# Loss (crates/model/src/loss.rs)
# ---------------------------------------------------------------------------------------------------------


def bce_with_logits(x, y):
    return (x.clamp(min=0) - x * y + torch.log1p(torch.exp(-x.abs()))).mean()


def soft_dice_loss(logits, mask, smooth):
    b = logits.shape[0]
    p = torch.sigmoid(logits).reshape(b, -1)
    y = mask.reshape(b, -1)
    dice = (2 * (p * y).sum(1) + smooth) / (p.sum(1) + y.sum(1) + smooth)
    return (1 - dice).mean()


def aux_target(mask, size):
    if tuple(mask.shape[2:]) == tuple(size):
        return mask
    return F.adaptive_avg_pool2d(mask, size)


def tgcnet_loss(loss_cfg, logits, sims, mask):
    """Returns (total, dice, bce, [aux])."""
    dice = soft_dice_loss(logits, mask, loss_cfg["dice_smooth"])
    bce = bce_with_logits(logits, mask)
    aux = [bce_with_logits(s, aux_target(mask, s.shape[2:]).detach()) for s in sims]
    total = dice * loss_cfg["dice_weight"] + bce * loss_cfg["bce_weight"]
    for a in aux:
        total = total + a * loss_cfg["aux_weight"]
    return total, dice, bce, aux


# ---------------------------------------------------------------------------------------------------------
# Knowledge passages (crates/model/src/knowledge.rs: passage text only; matching is not re-implemented)
# ---------------------------------------------------------------------------------------------------------


def knowledge_entries(path: str | None = None) -> list[dict]:
    """The `[[entry]]` tables of a knowledge file (default: knowledge/default.toml)."""
    path = path or os.path.join(REPO, "knowledge", "default.toml")
    with open(path, "rb") as f:
        return tomllib.load(f)["entry"]


def passage_text(entry: dict) -> str:
    """`"<Term>. X-ray: <xray> CT: <ct>"`, as `KnowledgeEntry::passage_text`."""
    def sentence(s):
        t = " ".join(s.split())
        return t if t.endswith((".", "!", "?")) else t + "."

    term = entry["term"].strip()
    return f"{term[:1].upper()}{term[1:]}. X-ray: {sentence(entry['xray'])} CT: {sentence(entry['ct'])}"


def tokenize(texts, context_length=77, tgcnet: str | None = None):
    """CLIP BPE ids [N, context_length], 0-padded: open_clip's tokenizer (which matches ours) or, where
    open_clip is not installed, our own through `tgcnet tokenize` (see `find_tgcnet`)."""
    texts = list(texts)
    try:
        import open_clip
    except ImportError:
        exe = find_tgcnet(tgcnet)
        if exe is None:
            raise ImportError("tokenizing needs open_clip_torch or the tgcnet binary") from None
        if any("\n" in t for t in texts):
            raise ValueError("`tgcnet tokenize` reads one text per line")
        out = subprocess.run([exe, "tokenize", "--context-length", str(context_length)], input="\n".join(texts) + "\n",
                             check=True, capture_output=True, text=True).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        ids = torch.zeros(len(texts), context_length, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        return ids
    return open_clip.tokenize(texts, context_length=context_length).long()


def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--config", help="resolved config: TOML or JSON from `tgcnet info --show-config`")
    a = ap.parse_args()
    cfg = load_config(a.config) if a.config else preset_config(a.preset)
    torch.manual_seed(0)
    model = TgcNet(cfg).eval()
    entries = knowledge_entries(cfg["date"].get("knowledge_file"))
    ctx = cfg["clip"]["model"]["text"]["context_length"]
    model.set_passages(tokenize([passage_text(e) for e in entries], ctx))
    s = cfg["image_size"]
    caps = ["Bilateral pulmonary infection, two infected areas, middle left lung and lower right lung.",
            "Unilateral pulmonary infection, one infected area, upper left lung."]
    with torch.inference_mode():
        logits, sims = model(torch.randn(2, 3, s, s), TextBatch(tokenize(caps, ctx), [[0, 3], [2]]))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{total} parameters, {trainable} trainable; logits {tuple(logits.shape)}, "
          f"sims {[tuple(x.shape) for x in sims]}")


if __name__ == "__main__":
    main()
