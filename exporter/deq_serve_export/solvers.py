"""Reference fixed-point solvers and Jacobian estimates (PyTorch), used by the exporter's
parity and stability checks and by the deq-serve training recipes.

Solvers work on flattened per-sample vectors z of shape [B, D] and stop per sample.

  broyden(...)         batched limited-memory "good" Broyden (ring buffer of m updates)
  anderson(...)        batched Anderson acceleration
  fixed_point(...)     plain / damped fixed-point iteration
  solve(method, ...)   one entry point by manifest method name
  spectral_radius(...) power-iteration estimate of rho(J_f) at z*

Residuals are per sample:  abs = ||f(z) - z||,  rel = ||f(z) - z|| / (||f(z)|| + 1e-9)
(the definition of docs/reference/bundle-format.md, "stop_mode", and of the TypeScript runtime).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import torch
from torch import nn

Tensor = torch.Tensor
FlatFn = Callable[[Tensor], Tensor]

DENOM_EPS = 1e-9  # guard for the Sherman-Morrison denominator v^T dg (by magnitude)


def residuals(fz: Tensor, z: Tensor):
    """Per-sample abs and rel residuals for flattened tensors [B, D]."""
    g = fz - z
    a = g.norm(dim=1)
    r = a / (fz.norm(dim=1) + 1e-9)
    return a, r


def _pick(stop_mode: str, a: Tensor, r: Tensor) -> Tensor:
    if stop_mode == "abs":
        return a
    if stop_mode == "rel":
        return r
    raise ValueError(f"stop_mode must be 'abs' or 'rel', got {stop_mode!r}")


def _guard(denom: Tensor, eps: float = DENOM_EPS) -> Tensor:
    """Keep the sign of the denominator, bound its magnitude away from zero.

    Clamping to a small *positive* value would turn every negative denominator
    into a huge step; we only lift |denom| to eps.
    """
    sign = torch.where(denom >= 0, torch.ones_like(denom), -torch.ones_like(denom))
    return torch.where(denom.abs() < eps, sign * eps, denom)


@torch.no_grad()
def broyden(
    f: FlatFn,
    z0: Tensor,
    max_iter: int = 30,
    tol: float = 1e-3,
    stop_mode: str = "rel",
    m: int = 8,
    restart: float = 0.0,
) -> Dict[str, object]:
    """Batched limited-memory good Broyden for g(z) = f(z) - z = 0.

    f maps [B, D] -> [B, D]. The inverse Jacobian of g is approximated as
    Jinv = -I + U V^T with a ring buffer of the last m rank-one updates.
    Each sample stops on its own (its step is frozen once its residual is
    below tol); the loop ends when all samples stopped or after max_iter
    function evaluations. Returns the lowest-residual iterate per sample.

    restart > 0: a sample whose residual exceeds restart x its lowest so far (or is not
    finite) goes back to its lowest-residual iterate with an empty memory (off by default;
    the exporter's parity solve uses 10).

    Returns dict: result [B, D], nstep (f-evals until stop, per sample, long),
    lowest (best residual per sample, in stop_mode), abs/rel (residual at the
    returned iterate), abs_trace/rel_trace (list of per-iteration [B] tensors).
    """
    B, D = z0.shape
    dt, dev = z0.dtype, z0.device
    m = max(1, int(m))
    U = torch.zeros(B, D, m, dtype=dt, device=dev)
    V = torch.zeros(B, D, m, dtype=dt, device=dev)

    z = z0.clone()
    fz = f(z)
    g = fz - z
    a, r = residuals(fz, z)
    res = _pick(stop_mode, a, r)
    best = res.clone()
    best_z = z.clone()
    best_a, best_r = a.clone(), r.clone()
    active = res >= tol
    nstep = torch.ones(B, dtype=torch.long, device=dev)
    abs_trace, rel_trace = [a.clone()], [r.clone()]

    def jinv_mul(x: Tensor) -> Tensor:  # (-I + U V^T) x, x [B, D]
        return -x + torch.bmm(U, torch.bmm(V.transpose(1, 2), x.unsqueeze(2))).squeeze(2)

    def xt_jinv(x: Tensor) -> Tensor:  # x^T (-I + U V^T), returned as [B, D]
        return -x + torch.bmm(V, torch.bmm(U.transpose(1, 2), x.unsqueeze(2))).squeeze(2)

    dz = -jinv_mul(g)
    k = 0
    it = 1
    while it < max_iter and bool(active.any()):
        act = active.unsqueeze(1).to(dt)
        dz = dz * act
        z_new = z + dz
        fz_new = f(z_new)
        it += 1
        g_new = fz_new - z_new
        nstep = nstep + active.long()

        a, r = residuals(fz_new, z_new)
        res = _pick(stop_mode, a, r)
        improved = (res < best) & active
        best = torch.where(improved, res, best)
        best_a = torch.where(improved, a, best_a)
        best_r = torch.where(improved, r, best_r)
        best_z = torch.where(improved.unsqueeze(1), z_new, best_z)
        abs_trace.append(a)
        rel_trace.append(r)

        ddz = z_new - z
        ddg = g_new - g
        v = xt_jinv(ddz)
        denom = _guard((v * ddg).sum(1, keepdim=True))
        u = (ddz - jinv_mul(ddg)) / denom
        u = torch.nan_to_num(u, nan=0.0, posinf=0.0, neginf=0.0) * act
        v = torch.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0) * act
        slot = k % m
        U[:, :, slot] = u
        V[:, :, slot] = v
        k += 1

        z, g = z_new, g_new
        active = active & (res >= tol)
        if restart > 0:
            # restart a sample whose residual grew past restart x its best (or is not finite):
            # back to its lowest-residual iterate, with an empty Broyden memory
            bad = active & (~torch.isfinite(res) | (res > restart * best))
            if bool(bad.any()):
                z = torch.where(bad.unsqueeze(1), best_z, z)
                fzb = f(z)
                it += 1
                nstep = nstep + active.long()
                g = torch.where(bad.unsqueeze(1), fzb - z, g)
                keep = (~bad).to(dt).view(B, 1, 1)
                U.mul_(keep)
                V.mul_(keep)
        dz = -jinv_mul(g)

    return {
        "result": best_z,
        "nstep": nstep,
        "lowest": best,
        "abs": best_a,
        "rel": best_r,
        "abs_trace": abs_trace,
        "rel_trace": rel_trace,
    }


@torch.no_grad()
def anderson(
    f: FlatFn,
    z0: Tensor,
    max_iter: int = 50,
    tol: float = 1e-3,
    stop_mode: str = "rel",
    m: int = 6,
    lam: float = 1e-4,
    beta: float = 1.0,
) -> Dict[str, object]:
    """Simple batched Anderson acceleration (reference; not used for training)."""
    B, D = z0.shape
    X = torch.zeros(B, m, D, dtype=z0.dtype, device=z0.device)
    F = torch.zeros(B, m, D, dtype=z0.dtype, device=z0.device)
    X[:, 0] = z0
    F[:, 0] = f(z0)
    X[:, 1] = F[:, 0]
    F[:, 1] = f(F[:, 0])
    a, r = residuals(F[:, 0], X[:, 0])
    best = _pick(stop_mode, a, r)
    best_z = X[:, 0].clone()
    nstep = torch.full((B,), 2, dtype=torch.long, device=z0.device)
    active = torch.ones(B, dtype=torch.bool, device=z0.device)
    trace = []
    H = torch.zeros(B, m + 1, m + 1, dtype=z0.dtype, device=z0.device)
    H[:, 0, 1:] = H[:, 1:, 0] = 1
    y = torch.zeros(B, m + 1, 1, dtype=z0.dtype, device=z0.device)
    y[:, 0] = 1
    for k in range(2, max_iter):
        n = min(k, m)
        G = F[:, :n] - X[:, :n]
        H[:, 1:n + 1, 1:n + 1] = torch.bmm(G, G.transpose(1, 2)) + lam * torch.eye(
            n, dtype=z0.dtype, device=z0.device)[None]
        alpha = torch.linalg.solve(H[:, :n + 1, :n + 1], y[:, :n + 1])[:, 1:n + 1, 0]
        xn = beta * (alpha[:, None] @ F[:, :n])[:, 0] + (1 - beta) * (alpha[:, None] @ X[:, :n])[:, 0]
        X[:, k % m] = xn
        F[:, k % m] = f(xn)
        nstep = nstep + active.long()
        a, r = residuals(F[:, k % m], X[:, k % m])
        res = _pick(stop_mode, a, r)
        trace.append(res)
        imp = res < best
        best = torch.where(imp, res, best)
        best_z = torch.where(imp.unsqueeze(1), xn, best_z)
        active = active & (res >= tol)
        if not bool(active.any()):
            break
    return {"result": best_z, "nstep": nstep, "lowest": best, "trace": trace}


@torch.no_grad()
def fixed_point(
    f: FlatFn,
    z0: Tensor,
    max_iter: int = 100,
    tol: float = 1e-3,
    stop_mode: str = "rel",
    damping: float = 1.0,
) -> Dict[str, object]:
    """Damped fixed-point iteration z <- (1-d) z + d f(z), per-sample stopping."""
    z = z0.clone()
    B = z.shape[0]
    best = torch.full((B,), float("inf"), dtype=z.dtype, device=z.device)
    best_z = z.clone()
    nstep = torch.zeros(B, dtype=torch.long, device=z.device)
    active = torch.ones(B, dtype=torch.bool, device=z.device)
    trace = []
    for _ in range(max_iter):
        fz = f(z)
        nstep = nstep + active.long()
        a, r = residuals(fz, z)
        res = _pick(stop_mode, a, r)
        trace.append(res)
        imp = res < best
        best = torch.where(imp, res, best)
        best_z = torch.where(imp.unsqueeze(1), z, best_z)
        active = active & (res >= tol)
        if not bool(active.any()):
            break
        act = active.unsqueeze(1).to(z.dtype)
        z = z + act * damping * (fz - z)
    return {"result": best_z, "nstep": nstep, "lowest": best, "trace": trace}


SOLVERS = {"broyden": broyden, "anderson": anderson, "fixed-point": fixed_point}


def solve(method: str, f: FlatFn, z0: Tensor, **kw) -> Dict[str, object]:
    if method == "broyden":
        return broyden(f, z0, **kw)
    if method == "anderson":
        kw.pop("history", None)
        return anderson(f, z0, **kw)
    if method in ("fixed-point", "fixed_point"):
        kw.pop("m", None)
        return fixed_point(f, z0, **kw)
    raise ValueError(method)


def spectral_radius(f_shaped: Callable[[Tensor], Tensor], z_star: Tensor, n_iters: int = 60,
                    tail: int = 16, seed: int = 0) -> Tensor:
    """Power-iteration estimate of rho(J_f(z*)) per sample (uses v^T J, same spectrum).

    The estimate is the geometric mean of the growth ratio over the last `tail`
    iterations, which also handles a dominant complex-conjugate pair.
    """
    z = z_star.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        fz = f_shaped(z)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        v = torch.randn(z.shape, generator=gen).to(z)
        B = z.shape[0]
        v = v / v.reshape(B, -1).norm(dim=1).clamp_min(1e-30).view(B, *([1] * (z.dim() - 1)))
        logs = []
        for _ in range(n_iters):
            w = torch.autograd.grad(fz, z, v, retain_graph=True)[0]
            n = w.reshape(B, -1).norm(dim=1)
            logs.append(torch.log(n.clamp_min(1e-30)))
            v = w / n.clamp_min(1e-30).view(B, *([1] * (z.dim() - 1)))
    return torch.exp(torch.stack(logs[-tail:]).mean(0)).detach()


