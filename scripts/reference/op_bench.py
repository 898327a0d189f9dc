"""The ops of crates/model/examples/op_bench.rs in PyTorch (CPU, threads = cores), same shapes and timing.
    python scripts/reference/op_bench.py [FILTER]"""
import os, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get("THREADS", os.cpu_count())))
flt = sys.argv[1] if len(sys.argv) > 1 else ""


def tm(reps, f):
    for _ in range(2):
        f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t) * 1e3)
    return sorted(ts)[len(ts) // 2]


def report(name, fwd, bwd):
    if flt not in name:
        return
    with torch.no_grad():
        f = tm(7, fwd)
    b = tm(5, bwd)
    print(f"{name:<44} fwd {f:8.2f} ms   fwd+bwd {b:8.2f} ms")


def pair(mod, shape, post=lambda y: y):
    x = torch.randn(shape)
    xa = torch.randn(shape, requires_grad=True)

    def fwd():
        post(mod(x))

    def bwd():
        xa.grad = None
        post(mod(xa)).sum().backward()

    return fwd, bwd


for ci, co, s, st in [(3, 16, 224, 2), (16, 16, 112, 1), (16, 32, 112, 2), (32, 32, 56, 1), (32, 64, 56, 2),
                      (64, 64, 28, 1), (64, 128, 28, 2), (128, 128, 14, 1), (192, 64, 28, 1), (96, 32, 56, 1),
                      (48, 16, 112, 1)]:
    conv = nn.Conv2d(ci, co, 3, st, 1, bias=False)
    report(f"conv3x3 {ci}->{co} @{s} s{st}", *pair(conv, (1, ci, s, s)))
for c, s in [(16, 112), (32, 56), (64, 28), (128, 14)]:
    gn = nn.GroupNorm(8, c)
    report(f"groupnorm+relu {c} @{s}", *pair(lambda x: F.relu(gn(x)), (1, c, s, s)))
for c, a, b in [(128, 14, 28), (64, 28, 56), (32, 56, 112), (1, 112, 224), (64, 14, 28)]:
    report(f"bilinear {c} {a}->{b}",
           *pair(lambda x, b=b: F.interpolate(x, size=(b, b), mode="bilinear", align_corners=False), (1, c, a, a)))
L, D, H = 197, 192, 3
report("linear 197x192 -> 768", *pair(nn.Linear(D, 768), (1, L, D)))
report("gelu 197x768", *pair(F.gelu, (1, L, 768)))
report("layernorm 197x192", *pair(nn.LayerNorm(D), (1, L, D)))
report("attention fused 1x3x197x64", *pair(lambda q: F.scaled_dot_product_attention(q, q, q), (1, H, L, D // H)))
report("attention matmul+softmax 1x3x197x64",
       *pair(lambda q: torch.softmax(q @ q.transpose(2, 3) / 8, -1) @ q, (1, H, L, D // H)))
layer = nn.TransformerEncoderLayer(D, H, 768, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
report("vit block 197x192", *pair(layer, (1, L, D)))
