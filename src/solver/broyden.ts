import type { SolverWorkspace } from './workspace.js';
import { dot } from './vec.js';

// Limited-memory "good" Broyden on g(z) = f(z) − z, per sample. The inverse
// Jacobian is kept as J⁻¹ ≈ −I + U Vᵀ with at most m rank-one terms in a ring
// buffer: when full, the oldest update is overwritten. Unlike the reference
// code (which sizes U, V by the iteration cap) memory is fixed at 2·m·n per sample.

/** Smallest |vᵀΔg| for which a rank-one update is applied; below it the update is skipped. */
const MIN_DENOMINATOR = 1e-30;
/** Armijo constant and the smallest step the backtracking line search tries. */
const ARMIJO_C = 1e-4;
const MIN_ALPHA = 0.125;

/** First step from z₀: J⁻¹ = −I, so p = g and z₁ = z₀ + g = f(z₀). */
export function broydenStart(ws: SolverWorkspace, i: number): void {
  const n = ws.n, o = i * n;
  const z = ws.z, g = ws.g, p = ws.p, zPrev = ws.zPrev, gPrev = ws.gPrev;
  for (let k = 0; k < n; k++) {
    const gk = g[o + k];
    zPrev[o + k] = z[o + k];
    gPrev[o + k] = gk;
    p[o + k] = gk;
    z[o + k] += gk;
  }
  ws.resPrev[i] = ws.gNorm[i];
  ws.alpha[i] = 1;
}

/** Consumes the evaluation at z (g already computed) and writes the next z. */
export function broydenNext(ws: SolverWorkspace, i: number, lineSearch: boolean): void {
  const n = ws.n, m = ws.history, o = i * n;
  const z = ws.z, g = ws.g, p = ws.p, zPrev = ws.zPrev, gPrev = ws.gPrev;
  const U = ws.histA, V = ws.histB, s = ws.scratch;

  if (lineSearch) {
    const alpha = ws.alpha[i];
    const gnorm = ws.gNorm[i];
    if (gnorm > (1 - ARMIJO_C * alpha) * ws.resPrev[i] && alpha > MIN_ALPHA) {
      // Backtrack along the same direction; the rejected point updates nothing.
      const a = alpha * 0.5;
      ws.alpha[i] = a;
      for (let k = 0; k < n; k++) z[o + k] = zPrev[o + k] + a * p[o + k];
      return;
    }
  }

  // p ← Δz, gPrev ← Δg (both are rebuilt below, so their rows double as scratch).
  for (let k = 0; k < n; k++) {
    p[o + k] = z[o + k] - zPrev[o + k];
    gPrev[o + k] = g[o + k] - gPrev[o + k];
  }

  const count = ws.count[i];
  const base = i * m * n;
  // s = J⁻¹Δg = −Δg + U (VᵀΔg);  t = vᵀ = Δzᵀ J⁻¹ = −Δz + V (UᵀΔz)
  for (let k = 0; k < n; k++) {
    s[k] = -gPrev[o + k];
    s[n + k] = -p[o + k];
  }
  for (let j = 0; j < count; j++) {
    const jo = base + j * n;
    const a = dot(V, jo, gPrev, o, n);
    const b = dot(U, jo, p, o, n);
    for (let k = 0; k < n; k++) {
      s[k] += a * U[jo + k];
      s[n + k] += b * V[jo + k];
    }
  }
  let den = 0;
  for (let k = 0; k < n; k++) den += s[n + k] * gPrev[o + k];

  if (Math.abs(den) > MIN_DENOMINATOR && Number.isFinite(den)) {
    const slot = ws.head[i];
    const so = base + slot * n;
    const inv = 1 / den;
    let finite = true;
    for (let k = 0; k < n; k++) {
      const u = (p[o + k] - s[k]) * inv;
      if (!Number.isFinite(u) || !Number.isFinite(s[n + k])) { finite = false; break; }
    }
    if (finite) {
      for (let k = 0; k < n; k++) {
        U[so + k] = (p[o + k] - s[k]) * inv;
        V[so + k] = s[n + k];
      }
      ws.head[i] = (slot + 1) % m;
      if (count < m) ws.count[i] = count + 1;
    }
  }

  // Accept the point, then p = −J⁻¹g = g − U (Vᵀg).
  const updated = ws.count[i];
  for (let k = 0; k < n; k++) {
    const gk = g[o + k];
    zPrev[o + k] = z[o + k];
    gPrev[o + k] = gk;
    p[o + k] = gk;
  }
  for (let j = 0; j < updated; j++) {
    const jo = base + j * n;
    const c = dot(V, jo, g, o, n);
    for (let k = 0; k < n; k++) p[o + k] -= c * U[jo + k];
  }
  for (let k = 0; k < n; k++) z[o + k] += p[o + k];
  ws.resPrev[i] = ws.gNorm[i];
  ws.alpha[i] = 1;
}
