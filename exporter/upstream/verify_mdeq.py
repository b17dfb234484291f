"""By-hand check (issue #21): locuslab/deq's MDEQ (MDEQ-Vision, cls_mdeq_TINY) exports naming only
inject (`downsample`), f (`fullstage`) and head (`predict`), and deq-serve serves it as upstream's own
Broyden computes it.

    PYTHONPATH=exporter /usr/bin/python3 exporter/upstream/verify_mdeq.py /tmp/upstream/deq [OUT_DIR]

The argument is a checkout of github:locuslab/deq. Needs yacs and termcolor (upstream's imports;
`pip install --target DIR yacs termcolor` and --pydeps DIR), `npm run build`, and Fashion-MNIST
(apt-get install dataset-fashion-mnist). Not a CI test: CI has no upstream checkout.

Why it trains first: MDEQ TINY as initialized has no reachable fixed point (upstream's Broyden
stays at a relative residual of about 0.4), so nothing could be compared. It is trained for
--steps steps (default 120, batch 8) on Fashion-MNIST (28x28 padded to TINY's 32x32, the gray channel
repeated to 3) with upstream's own DEQ training path (Broyden forward, implicit backward through
its hook) and upstream's Jacobian regularization (jac_loss_estimate, weight --jac-weight), which
is what makes the learned f contractive enough for the solves to converge. The weights are
cached in --checkpoint so the check can be rerun without training.

Shims, in this script only (upstream is not edited): scipy (imported by lib/solvers.py for an
unused `root`) is stubbed when missing, and torch.cuda.synchronize (called in upstream's backward
hook) is a no-op on a CPU-only torch.
"""
from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

from deq_serve_export import export_bundle  # noqa: E402

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's pixel mean and std


def fashion(split="train"):
    root = "/usr/share/datasets/fashion-mnist"
    stem = "train" if split == "train" else "t10k"
    with gzip.open(f"{root}/{stem}-images-idx3-ubyte.gz") as fh:
        x = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(f"{root}/{stem}-labels-idx1-ubyte.gz") as fh:
        y = np.frombuffer(fh.read(), np.uint8, offset=8)
    return x, y


def to_input(images: np.ndarray) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 3, 32, 32): normalized, zero-padded by 2, gray repeated to 3 channels."""
    t = (torch.tensor(images, dtype=torch.float32) / 255.0 - MEAN) / STD
    t = F.pad(t, (2, 2, 2, 2), value=(0 - MEAN) / STD)
    return t[:, None].repeat(1, 3, 1, 1)


def build(upstream: str, pydeps: str | None):
    if pydeps:
        sys.path.insert(0, pydeps)
    sys.path[:0] = [upstream, os.path.join(upstream, "MDEQ-Vision", "lib"),
                    os.path.join(upstream, "MDEQ-Vision", "lib", "models")]
    stubbed = _common.stub_missing("scipy.optimize")
    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda *a, **k: None
    from config import config
    import mdeq
    import lib.solvers as solvers
    _common.unstub(stubbed)
    config.defrost()
    config.merge_from_file(os.path.join(upstream, "MDEQ-Vision", "experiments", "cifar", "cls_mdeq_TINY.yaml"))
    config.freeze()
    torch.manual_seed(0)
    return mdeq.get_cls_net(config), solvers, stubbed


def train(model, steps, jac_weight, batch):
    x_all, y_all = fashion("train")
    rng = np.random.default_rng(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    t0 = time.time()
    for step in range(steps):
        idx = rng.choice(len(x_all), batch, replace=False)
        x, y = to_input(x_all[idx]), torch.tensor(y_all[idx], dtype=torch.long)
        logits, jac_loss, _ = model(x, train_step=-1, compute_jac_loss=jac_weight > 0)  # DEQ mode (not pretraining)
        loss = F.cross_entropy(logits, y) + jac_weight * jac_loss.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == steps - 1:
            acc = (logits.argmax(1) == y).float().mean().item()
            print(f"step {step}: ce {F.cross_entropy(logits, y).item():.3f} jac {jac_loss.mean().item():.3f} "
                  f"acc {acc:.2f} ({time.time() - t0:.0f}s)", flush=True)
    return model.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("upstream", help="checkout of github:locuslab/deq")
    ap.add_argument("out", nargs="?", default=os.path.join(tempfile.gettempdir(), "verify-upstream", "mdeq-tiny"))
    ap.add_argument("--pydeps", help="folder with yacs and termcolor (pip install --target)")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--jac-weight", type=float, default=2.0)
    ap.add_argument("--checkpoint", default=os.path.join(tempfile.gettempdir(), "verify-upstream", "mdeq-tiny.pt"))
    ap.add_argument("--f-thres", type=int, default=200, help="upstream Broyden's iteration cap for the reference")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model, solvers, stubbed = build(a.upstream, a.pydeps)
    print(f"stubbed: {stubbed or 'nothing'}")
    if os.path.exists(a.checkpoint):
        model.load_state_dict(torch.load(a.checkpoint))
        print(f"loaded {a.checkpoint}")
    else:
        train(model, a.steps, a.jac_weight, a.batch)
        os.makedirs(os.path.dirname(a.checkpoint), exist_ok=True)
        torch.save(model.state_dict(), a.checkpoint)
    model.eval()

    # upstream's own forward: Broyden (stop_mode rel) at eps 1e-6, a cap of --f-thres steps
    record = {}
    broyden = solvers.broyden

    def recording_broyden(f, x0, threshold, eps=1e-3, stop_mode="rel", **kw):
        r = broyden(f, x0, threshold, eps=1e-6, stop_mode=stop_mode, **kw)
        record.update(nstep=r["nstep"], lowest=r["lowest"], stop_mode=stop_mode)
        return r
    model.f_solver = recording_broyden

    def reference(x):
        return model(x, train_step=-1, f_thres=a.f_thres)[0]

    x_test, _ = fashion("test")
    solver = {"method": "broyden", "tol": 1e-5, "stop_mode": "rel", "max_iter": 150, "history": 64}
    export_bundle(a.out, model.downsample, model.fullstage, model.predict,
                  parity_inputs={"x": to_input(x_test[:3])}, name="mdeq-tiny", task="tensor",
                  state_shape=[[24, 32, 32], [24, 16, 16]], inject_to="first", head_outputs=["logits"],
                  reference=reference, solver=solver, parity_atol=1e-4, strict=True)

    x = to_input(x_test[100:108])
    ys, infos = [], []
    with torch.no_grad():
        for i in range(len(x)):  # one at a time: upstream's residuals are batch-wide
            ys.append(reference(x[i:i + 1]))
            infos.append(dict(record))
    y = torch.cat(ys)
    upstream_info = (f"locuslab broyden eps 1e-6 ({infos[0]['stop_mode']}), threshold {a.f_thres}: nstep "
                     f"{[int(i['nstep']) for i in infos]}, lowest rel residual max {max(i['lowest'] for i in infos):.2g}")
    served = _common.serve_run(a.out, {"x": x.numpy()})
    sys.exit(_common.report("MDEQ TINY (locuslab/deq MDEQ-Vision)", _common.upstream_commit(a.upstream),
                            served, {"logits": y.numpy()}, upstream_info, a.out))


if __name__ == "__main__":
    main()
