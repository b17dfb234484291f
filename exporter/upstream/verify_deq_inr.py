"""By-hand check (issue #21): torchdeq's deq-zoo DEQ-INR, built from upstream source with get_deq,
apply_norm and reset_norm, exports naming only inject, f and head, and deq-serve serves it as
torchdeq's own solver computes it.

    PYTHONPATH=exporter $(exporter/ci/make-venv.sh | tail -n 1) exporter/upstream/verify_deq_inr.py \
        /tmp/upstream/torchdeq [OUT_DIR]

The argument is a checkout of github:locuslab/torchdeq (its deq-zoo/deq-inr is imported; torchdeq
itself comes from PyPI in the venv). Needs `npm run build` (deq-serve's CLI in dist/) and
Fashion-MNIST (apt-get install dataset-fashion-mnist). Not a CI test: CI has no upstream checkout.

The model is DEQ-Fourier-MFN1L256D as deq-zoo's get_summary_dict configures it (spectral norm,
fixed-point solver, f_max_iter 100), fitted for 150 Adam steps to one 28x28 Fashion-MNIST image
(deq-zoo fits images the same way; its own images need downloads). torchdeq's forward solve is
tightened to f_tol 1e-6 (abs) so that its outputs are a converged fixed point to compare with.
"""
from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

from deq_serve_export import export_bundle  # noqa: E402


def fashion_image(index=0):
    with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as fh:
        data = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    return data[index].astype(np.float32) / 255.0


def grid(res):
    xs = np.linspace(0, 1, res) * 2 - 1  # as deq-zoo's train_2d_image.py
    return torch.tensor(np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2), dtype=torch.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("upstream", help="checkout of github:locuslab/torchdeq")
    ap.add_argument("out", nargs="?", default=os.path.join(tempfile.gettempdir(), "verify-upstream", "deq-inr"))
    ap.add_argument("--steps", type=int, default=150)
    a = ap.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, os.path.join(a.upstream, "deq-zoo", "deq-inr"))
    from torchdeq.utils import add_deq_args
    stubbed = _common.stub_missing("tqdm", "plyfile", "skimage.measure", "configargparse")  # modules/utils.py
    print(f"stubbed (imported by deq-zoo's modules/utils.py, unused here): {stubbed}")
    from modules.modeling_utils import construct_model_args, get_model
    _common.unstub(stubbed)

    p = argparse.ArgumentParser()
    add_deq_args(p)
    # deq-zoo's image config (configs/image_representation/*.yaml): fixed_point_iter, f_max_iter 100, grad 3
    args = p.parse_args(["--f_solver", "fixed_point_iter", "--f_max_iter", "100", "--grad", "3",
                         "--norm_type", "spectral_norm", "--f_tol", "1e-6"])
    torch.manual_seed(0)
    cfg = construct_model_args("implicit", args, 1, 2, 256, 1, input_scale=256., use_implicit=True,
                               filter_type="fourier", filter_options={"alpha": 3.0}, norm_type="spectral_norm")
    model = get_model(cfg)

    # fit one image, as deq-zoo does (their loss: MSE against the image in [-1, 1])
    x_train = grid(28)
    y_train = torch.tensor(fashion_image().reshape(-1, 1)) * 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(a.steps):
        out = model(x_train)
        loss = torch.mean((out["output"] - y_train) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == a.steps - 1:
            print(f"step {step}: mse {loss.item():.4f}, forward steps {out['forward_steps']:.0f}", flush=True)
    model.eval()

    # the documented export: inject, f and head named, the model itself the parity reference
    export_bundle(a.out, model.injection, model.f, model.output_map,
                  parity_inputs={"x": grid(7)[:6] * 0.9}, name="deq-inr", task="tensor",
                  state_shape=[model.interm_channels], head_outputs=["output"], reference=model,
                  solver={"method": "anderson", "tol": 1e-6, "stop_mode": "rel", "max_iter": 100, "history": 6},
                  parity_atol=1e-4, strict=True)

    # unseen coordinates (between the training pixels), solved by torchdeq's own forward
    x = grid(57)[::97][:32]
    with torch.no_grad():
        z0 = torch.zeros(x.shape[0], model.interm_channels)
        u = model.injection(x)
        from torchdeq.norm import reset_norm
        reset_norm(model.f)
        z_out, info = model.deq(lambda z: model.f(z, u), z0)
        y = model.output_map(z_out[-1])
    upstream_info = (f"torchdeq {args.f_solver} f_tol {args.f_tol} ({args.f_stop_mode}): nstep max "
                     f"{int(info['nstep'].max())}, abs residual max {float(info['abs_lowest'].max()):.2g}")
    served = _common.serve_run(a.out, {"x": x.numpy()})
    sys.exit(_common.report("DEQ-INR (torchdeq deq-zoo, DEQ-Fourier-MFN1L256D)",
                            _common.upstream_commit(a.upstream), served, {"output": y.numpy()}, upstream_info, a.out))


if __name__ == "__main__":
    main()
