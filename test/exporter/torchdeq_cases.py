"""The real torchdeq (PyPI) with deq_serve_export: a model built with get_deq, apply_norm and
reset_norm, as deq-zoo's models are, exported naming only inject, f and head (issue #21).

    PYTHONPATH=exporter:test/exporter VENV_PYTHON test/exporter/torchdeq_cases.py OUT_DIR

Needs torchdeq, so it runs in the PyPI virtual environment (exporter/ci/make-venv.sh), from
test/exporter/torchdeq.test.ts. Results and bundles as field_cases.py writes them.
"""
from __future__ import annotations

import sys

import torch
from torch import nn
from torchdeq import get_deq
from torchdeq.norm import apply_norm, reset_norm

import field_cases as fc
from field_cases import case, expect_error, tensor_bundle


class Cell(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, d)
        self.mix = nn.Linear(d, d, bias=False)

    def forward(self, z, u):
        return torch.tanh(self.lin(z) + self.mix(torch.tanh(z)) * 0.2 + u)


class TorchdeqModel(nn.Module):
    """As deq-zoo writes a DEQ: an encoder, f under a torchdeq norm, the DEQ core, a decoder."""

    def __init__(self, norm="weight_norm", d=16, n_in=6, n_out=3):
        super().__init__()
        self.enc, self.f, self.dec = nn.Linear(n_in, d), Cell(d), nn.Linear(d, n_out)
        self.out_drop = nn.Dropout(0.3)  # outside inject, f and head: only eval mode of the model turns it off
        apply_norm(self.f, norm)
        self.deq = get_deq(f_solver="anderson", f_max_iter=200, f_tol=1e-7, f_stop_mode="abs")

    def forward(self, x):
        reset_norm(self.f)
        u = self.enc(x)
        z_out, info = self.deq(lambda z: self.f(z, u), torch.zeros_like(u))
        self.last_info = info
        return self.out_drop(self.dec(z_out[-1]))


def checkpointed(norm):
    """A model loaded from a checkpoint: its norms' parameters changed, its stored .weight not."""
    torch.manual_seed(21)
    model = TorchdeqModel(norm)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for k in state:
        if k.endswith("_v") or k.endswith("_orig"):
            state[k] += 0.3 * torch.randn_like(state[k])
        if k.endswith("lin.weight_g"):
            state[k] *= 0.6  # a contraction, so torchdeq's own solve converges
    model.load_state_dict(state)
    return model.eval()


# the served solver: Broyden (deq-serve's TypeScript Anderson stalled on one of these inputs at radius 0.9)
SOLVER = {"method": "broyden", "tol": 1e-6, "stop_mode": "rel", "max_iter": 100, "history": 16}


def served(model, name):
    x = torch.randn(3, 6)
    with torch.no_grad():
        y = model(x)
    info = model.last_info
    return {"ok": True, "detail": f"exported; torchdeq's own solve: abs residual {float(info['abs_lowest'].max()):.2g}, "
                                  f"nstep {int(info['nstep'].max())}",
            "reference": {"inputs": {"x": x.tolist()}, "outputs": {"y": y.tolist()}}}


@case
def torchdeq_weight_norm():
    model = checkpointed("weight_norm").train()  # as left by a training loop: parity runs it in eval mode
    tensor_bundle("torchdeq-weight-norm", model.enc, model.f, model.dec, parity_inputs={"x": torch.randn(4, 6)},
                  reference=model, solver=SOLVER)
    if not model.training:
        return {"ok": False, "detail": "the caller's model was left in eval mode"}
    return served(model.eval(), "torchdeq-weight-norm")


@case
def torchdeq_spectral_norm():
    model = checkpointed("spectral_norm")
    tensor_bundle("torchdeq-spectral-norm", model.enc, model.f, model.dec, parity_inputs={"x": torch.randn(4, 6)},
                  reference=model, solver=SOLVER)
    return served(model, "torchdeq-spectral-norm")


@case
def torchdeq_stale_fails_parity():
    model = checkpointed("weight_norm")
    return expect_error(lambda: tensor_bundle("torchdeq-stale", model.enc, model.f, model.dec,
                                              parity_inputs={"x": torch.randn(4, 6)}, solver=SOLVER),
                        "PARITY FAIL", "cell.lin.weight", "torchdeq.norm.weight_norm.WeightNorm")


if __name__ == "__main__":
    fc.CASES = {k: v for k, v in fc.CASES.items() if v.__module__ == "__main__"}
    fc.main(sys.argv[2:])
