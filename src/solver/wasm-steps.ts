import { ARMIJO_C, MIN_ALPHA, MIN_DENOMINATOR } from './broyden.js';
import { solveBordered } from './anderson.js';
import type { SolverWorkspace, WasmState } from './workspace.js';

// The three methods' per-sample steps on the WebAssembly kernels. Each mirrors its
// TypeScript reference (broyden.ts, anderson.ts, fixed-point.ts) decision for
// decision; the row loops run in assembly/solver-kernels.ts. Each returns 0 when
// every value of the new iterate is finite and NaN otherwise.

/** Broyden's first step (J⁻¹ = −I): z ← z + g. */
export function broydenStartWasm(ws: SolverWorkspace, i: number): number {
  const w = ws.wasm!, row = i * ws.n * 4;
  ws.resPrev[i] = ws.gNorm[i];
  ws.alpha[i] = 1;
  return w.k.broydenStart(w.z + row, w.g + row, w.p + row, w.zPrev + row, w.gPrev + row, ws.n);
}

/** Consumes the evaluation at z (g already computed) and writes the next z. */
export function broydenNextWasm(ws: SolverWorkspace, i: number, lineSearch: boolean): number {
  const w = ws.wasm!, k = w.k, n = ws.n, m = ws.history, rowBytes = n * 4, row = i * rowBytes;
  const z = w.z + row, g = w.g + row, p = w.p + row, zPrev = w.zPrev + row, gPrev = w.gPrev + row;
  if (lineSearch) {
    const alpha = ws.alpha[i];
    if (ws.gNorm[i] > (1 - ARMIJO_C * alpha) * ws.resPrev[i] && alpha > MIN_ALPHA) {
      // Rare (line search is off by default): the reference's own loop is fine here.
      const a = alpha * 0.5, o = i * n, zr = ws.z, zp = ws.zPrev, pr = ws.p;
      ws.alpha[i] = a;
      for (let j = 0; j < n; j++) zr[o + j] = zp[o + j] + a * pr[o + j];
      return k.finite(z, n);
    }
  }
  const count = ws.count[i], slot = ws.head[i], replacing = count === m, alpha = ws.alpha[i];
  const U = w.histA + i * m * rowBytes, V = w.histB + i * m * rowBytes;
  const out = w.outView, dots = w.coefView, c32 = w.coef32View, c = ws.coeff;
  // p ← Δz and every stored pair's two dot products, into coefView as (b, c) pairs.
  k.broydenDots(z, zPrev, p, g, U, V, rowBytes, count, n, w.coef);
  for (let j = 0; j < count; j++) {
    c[j] = dots[2 * j + 1];
    if (replacing && j === slot) dots[2 * j + 1] = 0;
    c32[2 * j] = dots[2 * j];
    c32[2 * j + 1] = dots[2 * j + 1];
  }
  // The float64 kernel reads the pairs as they are, the float32 one their float32 copy.
  k.broydenCombine(z, zPrev, p, g, gPrev, U, V, rowBytes, w.f32 ? w.coef32 : w.coef, count, n, w.scratch, w.out);
  const den = out[0], vg = out[1];
  const Us = U + slot * rowBytes, Vs = V + slot * rowBytes;
  let zsum: number;
  if (Math.abs(den) > MIN_DENOMINATOR && Number.isFinite(den)) {
    if (Number.isFinite(vg)) {
      k.broydenUpdateAccept(z, zPrev, g, gPrev, p, w.scratch, Us, Vs, 1 / den, 1 - 1 / alpha, replacing ? c[slot] : 0, vg, n, w.out);
      if (Number.isFinite(out[0])) {
        ws.head[i] = (slot + 1) % m;
        if (count < m) ws.count[i] = count + 1;
        zsum = out[1];
      } else {
        // The pair overflowed float32: drop it and take the plain step from the previous point.
        clearSlot(ws, w, Us);
        zsum = k.broydenAccept(z, zPrev, g, gPrev, p, w.scratch, Us, 0, 1, n);
      }
    } else {
      clearSlot(ws, w, Us);
      zsum = k.broydenAccept(z, zPrev, g, gPrev, p, w.scratch, Us, 0, 0, n);
    }
  } else {
    // Update skipped; a slot that was due to be replaced keeps its term.
    zsum = k.broydenAccept(z, zPrev, g, gPrev, p, w.scratch, Us, replacing ? c[slot] : 0, 0, n);
  }
  ws.resPrev[i] = ws.gNorm[i];
  ws.alpha[i] = 1;
  return zsum;
}

function clearSlot(ws: SolverWorkspace, w: WasmState, Us: number): void {
  // histA and histB share one layout, so the slot's index is the same in both.
  const a = (Us - w.histA) / 4;
  ws.histA.fill(0, a, a + ws.n);
  ws.histB.fill(0, a, a + ws.n);
}

/** Anderson: stores (z, f(z)) in the ring, updates one Gram row, mixes. */
export function andersonNextWasm(ws: SolverWorkspace, i: number, lambda: number, beta: number): number {
  const w = ws.wasm!, k = w.k, n = ws.n, m = ws.history, rowBytes = n * 4, row = i * rowBytes;
  const X = w.histA + i * m * rowBytes, F = w.histB + i * m * rowBytes;
  const slot = ws.head[i];
  k.copy(X + slot * rowBytes, w.z + row, rowBytes);
  k.copy(F + slot * rowBytes, w.fz + row, rowBytes);
  const count = Math.min(ws.count[i] + 1, m);
  ws.count[i] = count;
  ws.head[i] = (slot + 1) % m;
  const H = ws.gram, hb = i * m * m, dots = w.coefView;
  k.andersonGram(X, F, rowBytes, w.g + row, count, n, w.coef);
  for (let j = 0; j < count; j++) {
    H[hb + slot * m + j] = dots[j];
    H[hb + j * m + slot] = dots[j];
  }
  const alpha = ws.coeff;
  if (!solveBordered(ws, hb, count, lambda)) {
    for (let j = 0; j < count; j++) alpha[j] = 0;
    alpha[slot] = 1;
  }
  for (let j = 0; j < count; j++) dots[j] = alpha[j];
  return k.andersonMix(w.z + row, X, F, rowBytes, w.coef, beta, count, n);
}

/** Damped Picard step: z ← z + d·g. */
export function fixedPointNextWasm(ws: SolverWorkspace, i: number, damping: number): number {
  const w = ws.wasm!, row = i * ws.n * 4;
  return w.k.fixedPoint(w.z + row, w.g + row, damping, ws.n);
}
