"""A NumPy fixed-point solver with deq-serve's semantics, for the ONNX Runtime peers of
`deq-serve bench compare` and `bench http` (issue #29): what a user driving the bundle's
three graphs from Python would write around `InferenceSession.run`.

Written from deq-serve's solver contract (src/solver/types.ts, docs/solver.md), not
from its code, so the two can disagree and the benchmark's Δ and NFE columns would show it:

* per sample: residual abs = ||f(z) - z||, rel = abs / (||f(z)|| + 1e-9) (norms in float64);
  a sample stops when its residual is below tol (converged), when it has used max_iter
  evaluations of f (the first, f(z0), included), when its residual is not finite or its
  abs residual exceeds divergence_factor x its first one (diverged); samples stop
  independently and a stopped sample is no longer evaluated;
* the answer is each sample's lowest-residual iterate;
* Broyden: "good" Broyden on g(z) = f(z) - z with J^-1 ~ -I + U V^T, at most m rank-one
  updates in a ring (the oldest is overwritten); the first step (and the first after a
  restart) is z + g; an update whose denominator v^T dg has |.| <= 1e-30 is skipped;
* restart guard: a sample whose residual climbs past restart_factor x its best (not on a
  first step) drops its history and goes back to its best iterate, which is evaluated again;
* fixed-point: z <- z + damping (f(z) - z).

Anderson is not implemented here (the shipped bundles use Broyden): solve() refuses it.
State is float32 (as deq-serve's), the batch is vectorized over the active rows.
"""
from __future__ import annotations

import numpy as np

MIN_DENOMINATOR = 1e-30
DEFAULTS = dict(history=8, restart_factor=10.0, divergence_factor=1e4, damping=1.0)


def _norms(x):
    """Row norms in float64 (the residual test must not depend on float32 rounding of the sum)."""
    x64 = x.astype(np.float64, copy=False)
    return np.sqrt(np.einsum("ij,ij->i", x64, x64))


def solve(f, z0, method="broyden", tol=1e-3, stop_mode="rel", max_iter=30, history=8,
          restart_factor=10.0, divergence_factor=1e4, damping=1.0):
    """Solves z = f(z) per row of z0 [B, n] (float32).

    f(z_rows, rows) evaluates the rows `rows` (an int array into the batch) at z_rows
    [len(rows), n] and returns f there, same shape. Returns dict: z [B, n] (each row's
    lowest-residual iterate), nfe [B] (evaluations of f per row), residual [B] (its
    residual in stop_mode), end [B] ("converged" | "max_iter" | "diverged").
    """
    if method not in ("broyden", "fixed-point"):
        raise ValueError(f"numpy_broyden: method {method!r} is not implemented (broyden, fixed-point)")
    if stop_mode not in ("abs", "rel"):
        raise ValueError(f"numpy_broyden: stop_mode {stop_mode!r}")
    z = np.array(z0, dtype=np.float32, copy=True)
    B, n = z.shape
    m = int(history)
    broyden = method == "broyden"
    best = z.copy()
    best_res = np.full(B, np.inf)
    abs0 = np.zeros(B)
    nfe = np.zeros(B, dtype=np.int64)
    end = np.array([""] * B, dtype=object)
    active = np.ones(B, dtype=bool)
    fresh = np.ones(B, dtype=bool)  # the next evaluation is a first one (start or restart): take the plain step
    first = np.ones(B, dtype=bool)  # never stepped yet: the restart guard does not apply
    if broyden:
        U = np.zeros((B, m, n), dtype=np.float32)
        V = np.zeros((B, m, n), dtype=np.float32)
        head = np.zeros(B, dtype=np.int64)
        z_prev = np.zeros_like(z)
        g_prev = np.zeros_like(z)

    while active.any():
        rows = np.flatnonzero(active)
        zr = z[rows]
        fz = np.asarray(f(zr, rows), dtype=np.float32).reshape(len(rows), n)
        g = fz - zr
        nfe[rows] += 1
        a = _norms(g)
        res = a / (_norms(fz) + 1e-9) if stop_mode == "rel" else a
        abs0[rows] = np.where(nfe[rows] == 1, a, abs0[rows])

        finite = np.isfinite(res)
        better = finite & (res < best_res[rows])
        best_res[rows[better]] = res[better]
        best[rows[better]] = zr[better]
        converged = finite & (res < tol)
        diverged = ~finite | (~converged & (a > divergence_factor * np.maximum(abs0[rows], 1e-12)))
        capped = ~converged & ~diverged & (nfe[rows] >= max_iter)
        for mask, why in ((converged, "converged"), (diverged, "diverged"), (capped, "max_iter")):
            end[rows[mask]] = why
        go = ~(converged | diverged | capped)
        active[rows[~go]] = False

        # restart guard: back to the best iterate with an empty history
        climb = go & ~first[rows] & ~fresh[rows] & (res > restart_factor * best_res[rows])
        if climb.any():
            r = rows[climb]
            z[r] = best[r]
            fresh[r] = True
            if broyden:
                U[r] = 0
                V[r] = 0
                head[r] = 0
        go &= ~climb
        first[rows[go]] = False
        if not go.any():
            continue

        if not broyden:
            r = rows[go]
            z[r] = zr[go] + np.float32(damping) * g[go]
        else:
            start = go & fresh[rows]
            if start.any():
                r = rows[start]
                z_prev[r] = zr[start]
                g_prev[r] = g[start]
                z[r] = zr[start] + g[start]
                fresh[r] = False
            step = go & ~start
            if step.any():
                _broyden_step(rows[step], zr[step], g[step], z, z_prev, g_prev, U, V, head, m)
        bad = go & ~np.isfinite(z[rows]).all(axis=1)
        if bad.any():
            end[rows[bad]] = "diverged"
            active[rows[bad]] = False

    return {"z": best, "nfe": nfe, "residual": best_res, "end": end}


def _broyden_step(r, zr, g, z, z_prev, g_prev, U, V, head, m):
    """One good-Broyden update and step for rows r (zr, g: their iterate and g there)."""
    dz = zr - z_prev[r]
    dg = g - g_prev[r]
    # every row of the batch: work on U and V in place (a fancy index would copy them)
    whole = len(r) == U.shape[0]
    Ur, Vr = (U, V) if whole else (U[r], V[r])  # [k, m, n]
    # v^T = dz^T J^-1 = -dz^T + (dz^T U) V^T;   J^-1 dg = -dg + U (V^T dg)
    v = -dz + np.einsum("km,kmn->kn", np.einsum("kmn,kn->km", Ur, dz), Vr)
    jdg = -dg + np.einsum("km,kmn->kn", np.einsum("kmn,kn->km", Vr, dg), Ur)
    den = np.einsum("kn,kn->k", v.astype(np.float64), dg.astype(np.float64))
    ok = np.isfinite(den) & (np.abs(den) > MIN_DENOMINATOR)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = ((dz - jdg) / np.where(ok, den, 1.0)[:, None]).astype(np.float32)
    slot = head[r]
    stored = ok & np.isfinite(u).all(axis=1) & np.isfinite(v).all(axis=1)
    k = np.arange(len(r))
    # an update that overflowed float32 leaves its slot empty, as deq-serve does
    overflow = ok & ~stored
    Ur[k[stored], slot[stored]] = u[stored]
    Vr[k[stored], slot[stored]] = v[stored]
    Ur[k[overflow], slot[overflow]] = 0
    Vr[k[overflow], slot[overflow]] = 0
    head[r[stored]] = (slot[stored] + 1) % m
    if not whole:
        U[r], V[r] = Ur, Vr
    # the step with the updated J^-1: p = -J^-1 g = g - U (V^T g)
    p = g - np.einsum("km,kmn->kn", np.einsum("kmn,kn->km", Vr, g), Ur)
    z_prev[r] = zr
    g_prev[r] = g
    z[r] = zr + p
