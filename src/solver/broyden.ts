import type { SolverWorkspace } from './workspace.js';

// Limited-memory "good" Broyden on g(z) = f(z) − z, per sample. The inverse
// Jacobian is kept as J⁻¹ ≈ −I + U Vᵀ with at most m rank-one terms in a ring
// buffer: when full, the oldest update is overwritten. Unlike the reference
// code (which sizes U, V by the iteration cap) memory is fixed at 2·m·n per sample.

/** Smallest |vᵀΔg| for which a rank-one update is applied; below it the update is skipped. */
export const MIN_DENOMINATOR = 1e-30;
/** Armijo constant and the smallest step the backtracking line search tries. */
export const ARMIJO_C = 1e-4;
export const MIN_ALPHA = 0.125;

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

  const count = ws.count[i];
  const base = i * m * n;
  const slot = ws.head[i];
  // With a full ring the new update replaces `slot`, so the next step must not use it.
  const replacing = count === m;
  const alpha = ws.alpha[i];
  const coef = ws.coeff;

  // The last step direction was p = −J⁻¹g_prev with the current J⁻¹, so
  // J⁻¹Δg = J⁻¹g − J⁻¹g_prev = −q + p, where q = −J⁻¹g = g − U(Vᵀg) is needed for the
  // next step anyway. That saves the Vᵀ Δg products and one axpy per stored update
  // (4 instead of 6 multiply-adds per element and update).
  // p ← Δz (= α·p_dir); q (scratch[0..n)) ← g; t (scratch[n..2n)) ← −Δz.
  for (let k = 0; k < n; k++) {
    const dz = z[o + k] - zPrev[o + k];
    p[o + k] = dz;
    s[k] = g[o + k];
    s[n + k] = -dz;
  }
  // One pass per update for both dot products, one for both axpys.
  // t = Δzᵀ J⁻¹ = −Δz + V (UᵀΔz);  q = g − U (Vᵀg)
  for (let j = 0; j < count; j++) {
    const jo = base + j * n;
    let b = 0, c = 0;
    for (let k = 0; k < n; k++) {
      b += U[jo + k] * p[o + k];
      c += V[jo + k] * g[o + k];
    }
    coef[j] = c;
    const cq = replacing && j === slot ? 0 : c;
    for (let k = 0; k < n; k++) {
      s[n + k] += b * V[jo + k];
      s[k] -= cq * U[jo + k];
    }
  }
  let den = 0;
  for (let k = 0; k < n; k++) den += s[n + k] * (g[o + k] - gPrev[o + k]);

  // Rank-one update u = (Δz − J⁻¹Δg) / (vᵀΔg) = (Δz(1 − 1/α) + q_full) / den into the slot;
  // its contribution to the next step is −u (vᵀg).
  let tail = 0;
  const so = base + slot * n;
  if (Math.abs(den) > MIN_DENOMINATOR && Number.isFinite(den)) {
    const inv = 1 / den;
    const dzScale = 1 - 1 / alpha;
    const cOld = replacing ? coef[slot] : 0; // q excludes the slot being replaced; J⁻¹ still had it
    let vg = 0, check = 0;
    for (let k = 0; k < n; k++) {
      const u = (dzScale * p[o + k] + s[k] - cOld * U[so + k]) * inv;
      const v = s[n + k];
      U[so + k] = u;
      V[so + k] = v;
      vg += v * g[o + k];
      // Summed as stored: a value finite in float64 can still overflow float32.
      check += U[so + k] + V[so + k];
    }
    if (Number.isFinite(check) && Number.isFinite(vg)) {
      ws.head[i] = (slot + 1) % m;
      if (count < m) ws.count[i] = count + 1;
      tail = vg;
    } else {
      // Overflowed (float32 storage): an all-zero pair contributes nothing.
      for (let k = 0; k < n; k++) { U[so + k] = 0; V[so + k] = 0; }
    }
  } else if (replacing) {
    tail = coef[slot]; // update skipped: the slot stays, so its term is restored
  }

  // Accept the point: p = q − tail·U_slot, zPrev ← z, gPrev ← g, z ← z + p.
  for (let k = 0; k < n; k++) {
    const step = s[k] - (tail === 0 ? 0 : tail * U[so + k]);
    const zk = z[o + k];
    zPrev[o + k] = zk;
    gPrev[o + k] = g[o + k];
    p[o + k] = step;
    z[o + k] = zk + step;
  }
  ws.resPrev[i] = ws.gNorm[i];
  ws.alpha[i] = 1;
}
