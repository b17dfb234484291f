import type { SolverWorkspace } from './workspace.js';

// Anderson acceleration (type II) with a ring of the last m iterates X and
// their images F. Mixing weights α solve min ‖Σ αⱼ Gⱼ‖ s.t. Σ αⱼ = 1 through
// the bordered system [[0, 1ᵀ], [1, GGᵀ + λI]]. The Gram matrix is updated one
// row per iteration instead of being rebuilt (m dots rather than m²).

/** Consumes the evaluation at z (g = f(z) − z already computed) and writes the next z. */
export function andersonNext(ws: SolverWorkspace, i: number, lambda: number, beta: number): void {
  const n = ws.n, m = ws.history, o = i * n;
  const z = ws.z, fz = ws.fz, g = ws.g;
  const X = ws.histA, F = ws.histB, H = ws.gram;
  const base = i * m * n, hb = i * m * m;
  const slot = ws.head[i];
  const so = base + slot * n;
  for (let k = 0; k < n; k++) {
    X[so + k] = z[o + k];
    F[so + k] = fz[o + k];
  }
  const count = Math.min(ws.count[i] + 1, m);
  ws.count[i] = count;
  ws.head[i] = (slot + 1) % m;
  for (let j = 0; j < count; j++) {
    const jo = base + j * n;
    let s = 0;
    for (let k = 0; k < n; k++) s += (F[jo + k] - X[jo + k]) * g[o + k];
    H[hb + slot * m + j] = s;
    H[hb + j * m + slot] = s;
  }

  const alpha = ws.coeff;
  if (!solveBordered(ws, hb, count, lambda)) {
    // Singular or non-finite system (locuslab/deq#20): fall back to a plain step on the newest pair.
    for (let j = 0; j < count; j++) alpha[j] = 0;
    alpha[slot] = 1;
  }
  for (let k = 0; k < n; k++) z[o + k] = 0;
  for (let j = 0; j < count; j++) {
    const a = alpha[j];
    if (a === 0) continue;
    const jo = base + j * n;
    const af = beta * a, ax = (1 - beta) * a;
    for (let k = 0; k < n; k++) z[o + k] += af * F[jo + k] + ax * X[jo + k];
  }
}

/**
 * Solves [[0, 1ᵀ], [1, H + λI]] [ν; α] = [1; 0] by Gaussian elimination with
 * partial pivoting, writing α into ws.coeff. Returns false when singular.
 */
export function solveBordered(ws: SolverWorkspace, hb: number, k: number, lambda: number): boolean {
  const m = ws.history, A = ws.system, H = ws.gram, alpha = ws.coeff;
  const size = k + 1, w = size + 1;
  let scale = 0;
  for (let r = 0; r < size; r++) {
    for (let c = 0; c < size; c++) {
      let v: number;
      if (r === 0 && c === 0) v = 0;
      else if (r === 0 || c === 0) v = 1;
      else v = H[hb + (r - 1) * m + (c - 1)] + (r === c ? lambda : 0);
      A[r * w + c] = v;
      const av = Math.abs(v);
      if (av > scale) scale = av;
    }
    A[r * w + size] = r === 0 ? 1 : 0;
  }
  const eps = 1e-14 * scale;
  for (let col = 0; col < size; col++) {
    let piv = col, best = Math.abs(A[col * w + col]);
    for (let r = col + 1; r < size; r++) {
      const v = Math.abs(A[r * w + col]);
      if (v > best) { best = v; piv = r; }
    }
    if (!(best > eps)) return false;
    if (piv !== col) {
      for (let c = col; c < w; c++) {
        const t = A[col * w + c]; A[col * w + c] = A[piv * w + c]; A[piv * w + c] = t;
      }
    }
    const d = A[col * w + col];
    for (let r = col + 1; r < size; r++) {
      const factor = A[r * w + col] / d;
      if (factor === 0) continue;
      for (let c = col; c < w; c++) A[r * w + c] -= factor * A[col * w + c];
    }
  }
  for (let r = size - 1; r >= 0; r--) {
    let s = A[r * w + size];
    for (let c = r + 1; c < size; c++) s -= A[r * w + c] * A[c * w + size];
    const v = s / A[r * w + r];
    if (!Number.isFinite(v)) return false;
    A[r * w + size] = v;
  }
  for (let j = 0; j < k; j++) alpha[j] = A[(j + 1) * w + size];
  return true;
}
