import type { FixedPointFn } from '../../src/solver/index.js';
import { rng } from '../helpers/float.js';

/** Random n×n matrix scaled so its Frobenius norm (≥ spectral norm) equals `norm`. */
export function randomMatrix(n: number, norm: number, seed: number): Float64Array {
  const r = rng(seed);
  const W = new Float64Array(n * n);
  let s = 0;
  for (let i = 0; i < W.length; i++) { W[i] = r() * 2 - 1; s += W[i] * W[i]; }
  const k = norm / Math.sqrt(s);
  for (let i = 0; i < W.length; i++) W[i] *= k;
  return W;
}

export function randomVector(n: number, seed: number, scale = 1): Float64Array {
  const r = rng(seed);
  return Float64Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

/** Batched f(z) = act(c_b · W z + b), the same W and b for every sample, c per sample. */
export function batchedMap(W: Float64Array, b: Float64Array, n: number, act: (x: number) => number, c: number[] = [1]): FixedPointFn {
  return (z, out, active) => {
    const batch = z.length / n;
    for (let s = 0; s < batch; s++) {
      if (!active[s]) continue;
      const cs = c[s % c.length];
      for (let i = 0; i < n; i++) {
        let acc = 0;
        for (let j = 0; j < n; j++) acc += W[i * n + j] * z[s * n + j];
        out[s * n + i] = act(cs * acc + b[i]);
      }
    }
  };
}

/** Solves (I − W) z = b exactly (Gaussian elimination, float64). */
export function linearFixedPoint(W: Float64Array, b: Float64Array, n: number): Float64Array {
  const A = new Float64Array(n * (n + 1));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) A[i * (n + 1) + j] = (i === j ? 1 : 0) - W[i * n + j];
    A[i * (n + 1) + n] = b[i];
  }
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(A[r * (n + 1) + c]) > Math.abs(A[p * (n + 1) + c])) p = r;
    for (let k = 0; k <= n; k++) { const t = A[c * (n + 1) + k]; A[c * (n + 1) + k] = A[p * (n + 1) + k]; A[p * (n + 1) + k] = t; }
    for (let r = c + 1; r < n; r++) {
      const f = A[r * (n + 1) + c] / A[c * (n + 1) + c];
      for (let k = c; k <= n; k++) A[r * (n + 1) + k] -= f * A[c * (n + 1) + k];
    }
  }
  const x = new Float64Array(n);
  for (let r = n - 1; r >= 0; r--) {
    let s = A[r * (n + 1) + n];
    for (let k = r + 1; k < n; k++) s -= A[r * (n + 1) + k] * x[k];
    x[r] = s / A[r * (n + 1) + r];
  }
  return x;
}

/** Float64 Picard iteration to near machine precision: the reference for contractive maps. */
export function referenceFixedPoint(W: Float64Array, b: Float64Array, n: number, act: (x: number) => number, iters = 2000): Float64Array {
  let z = new Float64Array(n);
  for (let t = 0; t < iters; t++) {
    const nz = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let j = 0; j < n; j++) acc += W[i * n + j] * z[j];
      nz[i] = act(acc + b[i]);
    }
    z = nz;
  }
  return z;
}

/** diag·I plus a small random perturbation: a slowly contracting map when diag is near 1. */
export function nearIdentity(n: number, diag: number, noise: number, seed: number): Float64Array {
  const W = randomMatrix(n, noise, seed);
  for (let i = 0; i < n; i++) W[i * n + i] += diag;
  return W;
}
