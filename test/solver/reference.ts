// Small float64 re-implementations of the Broyden and Anderson steps, written from the
// textbook definitions (dense-free but with explicit J⁻¹ products, and Anderson's weights
// from (GGᵀ + λI)⁻¹1 rather than the bordered system). Given the iterates a solver actually
// visited and the f(z) values it saw, they predict each next iterate: comparing every
// prediction with the solver's own next iterate checks each step on its own, so float32
// rounding never accumulates into the comparison.

type Vec = Float64Array;

const dot = (a: Vec, b: Vec) => { let s = 0; for (let i = 0; i < a.length; i++) s += a[i] * b[i]; return s; };
const sub = (a: Vec, b: Vec) => a.map((v, i) => v - b[i]);
const norm = (a: Vec) => Math.sqrt(dot(a, a));

/** Solves A x = y (A n×n, row-major) by Gaussian elimination with partial pivoting. */
export function solveDense(A: number[][], y: number[]): number[] {
  const n = y.length;
  const M = A.map((row, i) => [...row, y[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    [M[c], M[p]] = [M[p], M[c]];
    for (let r = c + 1; r < n; r++) {
      const f = M[r][c] / M[c][c];
      for (let k = c; k <= n; k++) M[r][k] -= f * M[c][k];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r][n];
    for (let k = r + 1; k < n; k++) s -= M[r][k] * x[k];
    x[r] = s / M[r][r];
  }
  return x;
}

export interface BroydenPrediction {
  /** Predicted next iterate after each evaluation (the last one may not have been taken). */
  next: Vec[];
  /** Evaluations after which the line search backtracked instead of accepting. */
  backtracks: number;
  /** Rank-one updates that were skipped (|vᵀΔg| ≤ 1e-30). */
  skipped: number;
}

/**
 * Limited-memory good Broyden on g = f(z) − z with J⁻¹ ≈ −I + Σ uⱼvⱼᵀ (at most m terms; the
 * oldest is dropped when a new one comes), step −J⁻¹g, and optional Armijo backtracking:
 * a point whose ‖g‖ is not below (1 − 1e-4·α)·‖g_accepted‖ is rejected while α > 1/8, and
 * the step from the accepted point is retried with α/2.
 */
export function broydenReference(zs: Vec[], fs: Vec[], m: number, lineSearch = false): BroydenPrediction {
  const pairs: { u: Vec; v: Vec }[] = [];
  const J = (x: Vec) => { const r = x.map((v) => -v); for (const { u, v } of pairs) { const c = dot(v, x); for (let i = 0; i < r.length; i++) r[i] += c * u[i]; } return r; };
  const JT = (x: Vec) => { const r = x.map((v) => -v); for (const { u, v } of pairs) { const c = dot(u, x); for (let i = 0; i < r.length; i++) r[i] += c * v[i]; } return r; };
  const next: Vec[] = [];
  let backtracks = 0, skipped = 0;
  let zAcc = zs[0], gAcc = sub(fs[0], zs[0]), dir = gAcc.slice(), alpha = 1;
  next.push(zAcc.map((v, i) => v + dir[i]));
  for (let k = 1; k < zs.length; k++) {
    const z = zs[k], g = sub(fs[k], zs[k]);
    if (lineSearch && norm(g) > (1 - 1e-4 * alpha) * norm(gAcc) && alpha > 0.125) {
      alpha /= 2;
      backtracks++;
      next.push(zAcc.map((v, i) => v + alpha * dir[i]));
      continue;
    }
    const dz = sub(z, zAcc), dg = sub(g, gAcc);
    const v = JT(dz);
    const den = dot(v, dg);
    if (Math.abs(den) > 1e-30) {
      const Jdg = J(dg);
      const u = dz.map((d, i) => (d - Jdg[i]) / den);
      if (pairs.length === m) pairs.shift();
      pairs.push({ u, v });
    } else {
      skipped++;
    }
    dir = J(g).map((x) => -x);
    zAcc = z; gAcc = g; alpha = 1;
    next.push(z.map((x, i) => x + dir[i]));
  }
  return { next, backtracks, skipped };
}

/**
 * Type-II Anderson over the last m pairs (xⱼ, fⱼ): weights α = y / Σy with (GGᵀ + λI) y = 1,
 * the minimiser of ‖Σ αⱼ gⱼ‖² + λ‖α‖² subject to Σ αⱼ = 1; next = Σ αⱼ (β fⱼ + (1 − β) xⱼ).
 */
export function andersonReference(zs: Vec[], fs: Vec[], m: number, lambda: number, beta: number): Vec[] {
  const next: Vec[] = [];
  for (let k = 0; k < zs.length; k++) {
    const from = Math.max(0, k - m + 1);
    const X = zs.slice(from, k + 1), F = fs.slice(from, k + 1);
    const G = X.map((x, j) => sub(F[j], x));
    const H = G.map((a, i) => G.map((b, j) => dot(a, b) + (i === j ? lambda : 0)));
    const y = solveDense(H, G.map(() => 1));
    const sum = y.reduce((a, b) => a + b, 0);
    const out = new Float64Array(zs[k].length);
    X.forEach((x, j) => { const a = y[j] / sum; for (let i = 0; i < out.length; i++) out[i] += a * (beta * F[j][i] + (1 - beta) * x[i]); });
    next.push(out);
  }
  return next;
}

/**
 * Largest difference between each predicted next iterate and the one taken, relative to the
 * size of that step (‖next − z‖∞), over the steps larger than `minStep`·(1 + ‖z‖∞).
 */
export function worstStepError(zs: Vec[], predicted: Vec[], minStep = 1e-3): { worst: number; compared: number } {
  let worst = 0, compared = 0;
  for (let k = 0; k + 1 < zs.length; k++) {
    const z = zs[k], p = predicted[k], taken = zs[k + 1];
    let step = 0, err = 0, size = 0;
    for (let i = 0; i < z.length; i++) {
      step = Math.max(step, Math.abs(p[i] - z[i]));
      err = Math.max(err, Math.abs(p[i] - taken[i]));
      size = Math.max(size, Math.abs(z[i]));
    }
    if (step <= minStep * (1 + size)) continue;
    compared++;
    worst = Math.max(worst, err / step);
  }
  return { worst, compared };
}
