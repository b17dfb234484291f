"""Why torchdeq's Broyden returns NaN for some Fashion-MNIST images at batch 32 (the bench-peers reports).

Runs the torchdeq peer of `bench compare --peers` (models/recipes/bench_torch.py: the bundle's
weights, torchdeq's `get_deq` Broyden with the bundle's tol, cap and memory) on test images 32-63 of
fashion-mnist-jr, and prints, per evaluation of f, the relative residual of every sample whose
returned z* is not finite, next to its lowest residual before it turned NaN.
    ~/.cache/deq-serve/bench-peers/bin/python bench/torchdeq-nan-probe.py [bundle] [first]
Needs the peers' venv (models/recipes/make-bench-venv.sh) and dataset-fashion-mnist.
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models", "recipes"))
import bench_torch  # noqa: E402
from train_fashion_mnist import load_fashion_mnist  # noqa: E402

bundle = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "models", "fashion-mnist-jr")
first = int(sys.argv[2]) if len(sys.argv) > 2 else 32
torch.set_num_threads(1)
bench_torch.PEER = bench_torch.Peer("torchdeq")
manifest, inject, cell, head = bench_torch.build(bundle)
s = manifest["solver"]
x = load_fashion_mnist("/usr/share/datasets/fashion-mnist")[2][first:first + 32]

rel = []  # per evaluation: the relative residual of every sample
with torch.no_grad():
    u = inject(x)
    shape = u.shape

    def f(zf):
        out = cell(zf.view(shape), u).reshape(shape[0], -1)
        rel.append((out - zf).norm(dim=1) / (out.norm(dim=1) + 1e-9))
        return out

    out = bench_torch.PEER.solve("broyden", f, torch.zeros(shape[0], u[0].numel()), max_iter=s["max_iter"],
                                 tol=s["tol"], stop_mode=s["stop_mode"], m=s.get("history", 8))
trace = torch.stack(rel)  # (evaluations, batch)
bad = (~torch.isfinite(out["result"])).any(dim=1).nonzero().flatten().tolist()
print(f"{os.path.basename(os.path.normpath(bundle))}, images {first}-{first + 31}: {trace.shape[0]} evaluations "
      f"(memory {s.get('history', 8)}, tol {s['tol']} {s['stop_mode']}); samples under tol at the end: "
      f"{int((trace[-1] < s['tol']).sum())} of 32; images returned non-finite: {[first + i for i in bad]}")
for i in bad:
    t = trace[:, i]
    finite = torch.isfinite(t)
    best = int(torch.argmin(torch.where(finite, t, torch.full_like(t, float("inf")))))
    first_nan = int((~finite).nonzero()[0]) if (~finite).any() else -1
    print(f"  sample {first + i}: lowest rel residual {t[best]:.3g} at evaluation {best + 1}; "
          f"first NaN at evaluation {first_nan + 1}; trace " + " ".join(f"{v:.2g}" for v in t[:24].tolist()) + " …")
