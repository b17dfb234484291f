"""Four small DEQs of a researcher's own (not the recipes' code), exported with deq_serve_export.

    PYTHONPATH=exporter /usr/bin/python3 test/exporter/byo_models.py OUT_DIR

writes OUT_DIR/models/vec-tanh, OUT_DIR/models/fzx-two-input, OUT_DIR/models/uv-inject
(bundles to serve),
OUT_DIR/failing/slow-fixed-point (a model whose default solver fails), and
OUT_DIR/reference.json: request inputs and PyTorch's own fixed point for them (the
original modules, plain iteration to max |f(z) - z| < 5e-7), which test/exporter/byo-deq.test.ts compares with
the served outputs. docs/guides/export-your-deq.md walks through the same script.
"""
import json
import os
import sys

import torch
from torch import nn

from deq_serve_export import export_bundle
from reference_solve import fixed_point

torch.set_num_threads(2)


# --- 1. vector DEQ: z = tanh(W z + U x + b), 20 input features, linear head to 3 outputs
class VecInject(nn.Module):
    def __init__(self):
        super().__init__()
        self.U = nn.Linear(20, 16)

    def forward(self, x):
        return self.U(x)


class VecCell(nn.Module):
    def __init__(self):
        super().__init__()
        # spectral norm as a parametrization: exports (fold_norms folds it), unlike a norm in forward()
        self.W = nn.utils.parametrizations.spectral_norm(nn.Linear(16, 16, bias=False))

    def forward(self, z, u):
        return torch.tanh(0.8 * self.W(z) + u)


class VecHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Linear(16, 3)

    def forward(self, z):
        return self.out(z)


# --- 2. f(z, x, ids) as one graph: no inject, no head; two inputs (float32 and int64) whose
#        shapes differ from z; the outputs are named slices of z*
class TwoInputCell(nn.Module):
    def __init__(self):
        super().__init__()
        self.A = nn.Linear(12, 12, bias=False)
        self.B = nn.Linear(6, 12)
        self.E = nn.Embedding(10, 12)
        with torch.no_grad():
            self.A.weight.mul_(0.6 / torch.linalg.matrix_norm(self.A.weight, ord=2))

    def forward(self, z, x, ids):
        return torch.tanh(self.A(z) + self.B(x) + 0.3 * self.E(ids).sum(1))


# --- 3. an inject graph with two inputs (float32 features, int64 ids) and two outputs whose
#        shapes differ from z's: cell(z, u, v)
class TwoInject(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 10)
        self.emb = nn.Embedding(7, 3)

    def forward(self, x, ids):
        return self.lin(x), self.emb(ids).mean(1)


class UVCell(nn.Module):
    def __init__(self):
        super().__init__()
        self.A = nn.Linear(6, 6, bias=False)
        self.U = nn.Linear(10, 6)
        self.V = nn.Linear(3, 6, bias=False)
        with torch.no_grad():
            self.A.weight.mul_(0.7 / torch.linalg.matrix_norm(self.A.weight, ord=2))

    def forward(self, z, u, v):
        return torch.tanh(self.A(z) + self.U(u) + self.V(v))


# --- 4. a slowly contracting cell (spectral radius 0.97) whose default solver, plain
#        iteration capped at 30 steps, cannot reach its tolerance
class SlowCell(nn.Module):
    def __init__(self):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(4, 4))
        self.register_buffer("Q", 0.97 * q)

    def forward(self, z, u):
        return torch.tanh(z @ self.Q.T + u)


class SmallInject(nn.Module):
    """A small injection keeps tanh near its linear range, so the radius stays near 0.97."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 4, bias=False)

    def forward(self, x):
        return 0.05 * self.lin(x)




def main(OUT):
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    ref = {}

    inject, cell, head = VecInject().eval(), VecCell().eval(), VecHead().eval()
    export_bundle(os.path.join(OUT, "models", "vec-tanh"), inject, cell, head,
                  parity_inputs={"x": torch.randn(6, 20)}, name="vec-tanh", task="tensor",
                  description="z = tanh(0.8 W z + U x + b), 20 features -> 3 outputs (test model)",
                  solver={"method": "broyden", "tol": 1e-6, "stop_mode": "rel", "max_iter": 60, "history": 8},
                  head_outputs=["y"], parity_atol=1e-4)
    x = torch.randn(4, 20)
    with torch.no_grad():
        u = inject(x)
        z = fixed_point(lambda z: cell(z, u), torch.zeros(4, 16), tol=5e-7)
        ref["vec-tanh"] = {"inputs": {"x": x.tolist()}, "outputs": {"y": head(z).tolist()}}

    cell2 = TwoInputCell().eval()
    export_bundle(os.path.join(OUT, "models", "fzx-two-input"), None, cell2, None,
                  parity_inputs={"x": torch.randn(5, 6), "ids": torch.randint(0, 10, (5, 3))},
                  name="fzx-two-input", task="tensor", state_shape=[12],
                  state_outputs={"first": (0, [4]), "rest": (4, [2, 4])},
                  description="f(z, x, ids) = tanh(A z + B x + 0.3 sum E[ids]) as one graph (test model)",
                  solver={"method": "anderson", "tol": 1e-6, "stop_mode": "rel", "max_iter": 60, "history": 5},
                  parity_atol=1e-4)
    x2, ids = torch.randn(3, 6), torch.randint(0, 10, (3, 3))
    with torch.no_grad():
        z = fixed_point(lambda z: cell2(z, x2, ids), torch.zeros(3, 12), tol=5e-7)
        ref["fzx-two-input"] = {"inputs": {"x": x2.tolist(), "ids": ids.tolist()},
                                "outputs": {"first": z[:, :4].tolist(), "rest": z[:, 4:].reshape(3, 2, 4).tolist()}}

    inj3, cell3, head3 = TwoInject().eval(), UVCell().eval(), nn.Linear(6, 2).eval()
    export_bundle(os.path.join(OUT, "models", "uv-inject"), inj3, cell3, head3,
                  parity_inputs={"x": torch.randn(4, 5), "ids": torch.randint(0, 7, (4, 2))},
                  inject_outputs=("u", "v"), state_shape=[6], name="uv-inject", task="tensor",
                  head_outputs=["y"], parity_atol=1e-4,
                  solver={"method": "broyden", "tol": 1e-6, "stop_mode": "rel", "max_iter": 60, "history": 8})
    x3, ids3 = torch.randn(3, 5), torch.randint(0, 7, (3, 2))
    with torch.no_grad():
        u3, v3 = inj3(x3, ids3)
        z = fixed_point(lambda z: cell3(z, u3, v3), torch.zeros(3, 6), tol=5e-7)
        ref["uv-inject"] = {"inputs": {"x": x3.tolist(), "ids": ids3.tolist()}, "outputs": {"y": head3(z).tolist()}}

    export_bundle(os.path.join(OUT, "failing", "slow-fixed-point"), SmallInject().eval(), SlowCell().eval(),
                  nn.Linear(4, 2).eval(), parity_inputs={"x": torch.randn(4, 8)},
                  name="slow-fixed-point", task="tensor", head_outputs=["y"],
                  solver={"method": "fixed-point", "tol": 1e-4, "stop_mode": "rel", "max_iter": 30})

    with open(os.path.join(OUT, "reference.json"), "w") as fh:
        json.dump(ref, fh)
    print("exported to", OUT)


if __name__ == "__main__":
    main(sys.argv[1])
