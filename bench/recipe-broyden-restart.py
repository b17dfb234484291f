"""The recipe's PyTorch Broyden on a shipped Fashion-MNIST bundle, with and without deq-serve's restart
guard (a sample whose residual climbs past 10x its best restarts from its best iterate): how many of
the first N test images each converges on at the manifest's solver, and the mean NFE.
    /usr/bin/python3 bench/recipe-broyden-restart.py [N] [bundle]
Needs dataset-fashion-mnist. models/recipes/runs/2026-12-05-cpu-r3/README.md quotes a run.
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models", "recipes"))
import bench_torch  # noqa: E402
from deq import solve  # noqa: E402
from train_fashion_mnist import load_fashion_mnist  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
bundle = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "models", "fashion-mnist-plain")
torch.set_num_threads(2)
manifest, inject, cell, _ = bench_torch.build(bundle)
s = manifest["solver"]
x = load_fashion_mnist("/usr/share/datasets/fashion-mnist")[2][:N]
for restart in (0.0, 10.0):
    converged, nfe = 0, 0.0
    with torch.no_grad():
        for b in range(0, N, 250):
            u = inject(x[b:b + 250])
            shape = u.shape

            def f(zf, u=u, shape=shape):
                return cell(zf.view(shape), u).reshape(shape[0], -1)

            out = solve("broyden", f, torch.zeros(shape[0], u[0].numel()), max_iter=s["max_iter"], tol=s["tol"],
                        stop_mode=s["stop_mode"], m=s.get("history", 8), restart=restart)
            converged += int((out["lowest"] <= s["tol"]).sum())
            nfe += float(out["nstep"].float().sum())
    print(f"{manifest['name']}, restart {restart:g}: converged {converged} of {N}, mean NFE {nfe / N:.2f}", flush=True)
