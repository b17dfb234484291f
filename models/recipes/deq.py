"""DEQ training code for the deq-serve recipes.

  DEQFixedPoint       nn.Module: no-grad forward solve + implicit backward
  jac_hutchinson(...) Hutchinson estimate of ||J_f||_F^2 / d (JR loss)

The solvers (broyden, anderson, fixed_point, solve, spectral_radius) live in the exporter
package, deq_serve_export.solvers, so training, export and parity share one implementation;
they are re-exported here for the recipes.

Written for PyTorch 1.13 (Debian /usr/bin/python3).
"""
from __future__ import annotations

import os
import sys
from typing import Dict, Optional

import torch
from torch import nn

try:
    import deq_serve_export  # noqa: F401  (pip-installed, or on PYTHONPATH)
except ImportError:  # run from a checkout: the package sits in <repo>/exporter
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "exporter"))
from deq_serve_export.solvers import (  # noqa: E402,F401
    Tensor, anderson, broyden, fixed_point, residuals, solve, spectral_radius)

def jac_hutchinson(fz: Tensor, z: Tensor, vecs: int = 1, create_graph: bool = True) -> Tensor:
    """Hutchinson estimate of ||J_f||_F^2 / d, averaged over the batch.

    fz = f(z) must have been computed from z (requires_grad) with grad enabled.
    Uses v^T J via reverse mode: E_v ||v^T J||^2 = ||J||_F^2 for v ~ N(0, I).
    """
    total = fz.new_zeros(())
    for i in range(vecs):
        v = torch.randn_like(z)
        vJ = torch.autograd.grad(fz, z, v, retain_graph=True, create_graph=create_graph)[0]
        total = total + vJ.pow(2).sum()
    return total / vecs / z.numel()


# --------------------------------------------------------------------------
# DEQ layer
# --------------------------------------------------------------------------

class DEQFixedPoint(nn.Module):
    """z* = cell(z*, u), solved with Broyden; gradients via the implicit function theorem.

    forward(u) -> z* (same shape as u; z0 = 0). In training mode with grad
    enabled the returned tensor is f(z*, u) re-evaluated once with grad, and a
    backward hook replaces the incoming gradient g with the solution of the
    adjoint fixed point y = y J_f(z*) + g (solved with Broyden).

    After each call `self.info` holds: nstep (mean f-evals), rel/abs (mean
    final residual), and, if jac=True was passed, `self.jac_loss` is the
    Hutchinson estimate of ||J_f||_F^2/d at z* (differentiable).
    """

    def __init__(self, cell: nn.Module, f_max_iter: int = 30, b_max_iter: int = 30,
                 f_tol: float = 1e-3, b_tol: float = 1e-4, stop_mode: str = "rel",
                 history: int = 8, method: str = "broyden"):
        super().__init__()
        self.cell = cell
        self.f_max_iter = f_max_iter
        self.b_max_iter = b_max_iter
        self.f_tol = f_tol
        self.b_tol = b_tol
        self.stop_mode = stop_mode
        self.history = history
        self.method = method
        self.info: Dict[str, float] = {}
        self.jac_loss: Optional[Tensor] = None
        self._hook = None

    def solve(self, u: Tensor, max_iter: Optional[int] = None, tol: Optional[float] = None,
              stop_mode: Optional[str] = None, history: Optional[int] = None,
              method: Optional[str] = None, restart: float = 0.0) -> Dict[str, object]:
        shape = u.shape
        B = shape[0]

        def f(zf: Tensor) -> Tensor:
            return self.cell(zf.view(shape), u).reshape(B, -1)

        z0 = torch.zeros(B, u[0].numel(), dtype=u.dtype, device=u.device)
        kw = dict(max_iter=max_iter or self.f_max_iter, tol=tol if tol is not None else self.f_tol,
                  stop_mode=stop_mode or self.stop_mode)
        method = method or self.method
        if method == "broyden":
            kw["m"] = history or self.history
            kw["restart"] = restart
        with torch.no_grad():
            out = solve(method, f, z0, **kw)
        out["result"] = out["result"].view(shape)
        return out

    def forward(self, u: Tensor, jac: bool = False, f_max_iter: Optional[int] = None) -> Tensor:
        out = self.solve(u.detach(), max_iter=f_max_iter)
        z_star = out["result"]
        self.info = {
            "nstep": float(out["nstep"].float().mean()),
            "nstep_max": float(out["nstep"].max()),
            "rel": float(out["rel"].mean()) if "rel" in out else float("nan"),
            "abs": float(out["abs"].mean()) if "abs" in out else float("nan"),
        }
        self.jac_loss = None
        if not (self.training and torch.is_grad_enabled()):
            return z_star

        if jac:
            # separate evaluation so the JR gradient never passes the implicit hook
            zj = z_star.detach().clone().requires_grad_(True)
            fj = self.cell(zj, u)
            self.jac_loss = jac_hutchinson(fj, zj)

        z_leaf = z_star.detach().clone().requires_grad_(True)
        new_z = self.cell(z_leaf, u)
        B = u.shape[0]
        deq = self

        def backward_hook(grad: Tensor) -> Tensor:
            # remove first: autograd.grad below would otherwise re-enter this hook
            if deq._hook is not None:
                deq._hook.remove()
                deq._hook = None
            gflat = grad.reshape(B, -1)

            def adj(yf: Tensor) -> Tensor:
                with torch.enable_grad():
                    yJ = torch.autograd.grad(new_z, z_leaf, yf.view_as(grad), retain_graph=True)[0]
                return yJ.reshape(B, -1) + gflat

            res = broyden(adj, torch.zeros_like(gflat), max_iter=deq.b_max_iter, tol=deq.b_tol,
                          stop_mode=deq.stop_mode, m=deq.history)
            deq.info["b_nstep"] = float(res["nstep"].float().mean())
            deq.info["b_rel"] = float(res["rel"].mean())
            return res["result"].view_as(grad)

        self._hook = new_z.register_hook(backward_hook)
        return new_z
