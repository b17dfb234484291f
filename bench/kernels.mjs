// Per-kernel times for docs/solver.md ("Kernel precision"): each wasm kernel of one Broyden
// iteration at the Fashion-MNIST state size (n = 6272, history 8), float64 module against
// float32 module, best of 15 rounds. Run on a quiet machine: npm run build && node bench/kernels.mjs
import { SolverWorkspace } from '../dist/solver/index.js';
const n = 6272, m = 8;
const res = {};
for (const kernel of ['wasm', 'wasm-f32']) {
const ws = new SolverWorkspace('broyden', 1, n, m, kernel);
const w = ws.wasm, k = w.k;
for (let i = 0; i < n; i++) { ws.z[i] = Math.sin(i); ws.fz[i] = Math.cos(i); ws.g[i]=0.1; ws.zPrev[i]=0.2; ws.gPrev[i]=0.3; }
for (let i = 0; i < ws.histA.length; i++) { ws.histA[i] = Math.sin(i)*0.01; ws.histB[i] = Math.cos(i)*0.01; }
const rowBytes = n*4;
function time(name, fn, reps = 2000) {
  let best = Infinity;
  for (let t = 0; t < 15; t++) { const t0 = performance.now(); for (let r = 0; r < reps; r++) fn(); best = Math.min(best, (performance.now() - t0) * 1000 / reps); }
  (res[name] ??= {})[kernel] = best.toFixed(2);
}
time('residual', () => k.residual(w.z, w.fz, w.g, n, w.out));
time('finite', () => k.finite(w.z, n));
time('copy row', () => k.copy(w.zBest, w.z, 4 * n));
for (const count of [0, 2, 8]) {
  for (let j = 0; j < 2*count; j++) { w.coef32View[j] = 0.01; w.coefView[j] = 0.01; }
  time('dots count ' + count, () => k.broydenDots(w.z, w.zPrev, w.p, w.g, w.histA, w.histB, rowBytes, count, n, w.coef));
  time('combine count ' + count, () => k.broydenCombine(w.z, w.zPrev, w.p, w.g, w.gPrev, w.histA, w.histB, rowBytes, w.f32 ? w.coef32 : w.coef, count, n, w.scratch, w.out));
}
time('updateAccept', () => k.broydenUpdateAccept(w.z, w.zPrev, w.g, w.gPrev, w.p, w.scratch, w.histA, w.histB, 1e-3, 0, 0, 0.1, n, w.out));
time('accept', () => k.broydenAccept(w.z, w.zPrev, w.g, w.gPrev, w.p, w.scratch, w.histA, 0.1, 0, n));
time('fixedPoint', () => k.fixedPoint(w.z, w.g, 0.0, n));
}
console.log('µs (min of 15)'.padEnd(20), 'wasm', 'wasm-f32');
for (const [name, r] of Object.entries(res)) console.log(name.padEnd(20), r.wasm.padStart(7), r['wasm-f32'].padStart(7));
