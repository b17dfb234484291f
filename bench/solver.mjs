// Solver-only micro benchmark: the TypeScript Broyden loop on a cheap synthetic
// map, so the time is almost all solver arithmetic. Run after `npm run build`:
//   node bench/solver.mjs [n=6272] [history=8] [kernel=wasm|js]
// n = 6272 is the Fashion-MNIST cell's state (32 × 14 × 14).
import { solve, SolverWorkspace } from '../dist/solver/index.js';

const n = Number(process.argv[2] ?? 6272);
const history = Number(process.argv[3] ?? 8);
const kernel = process.argv[4] ?? 'wasm';
const b = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
const f = (z, out) => { for (let k = 0; k < n; k++) out[k] = 0.7 * Math.tanh(z[(k * 7) % n]) + b[k]; };
const ws = new SolverWorkspace('broyden', 1, n, history, kernel);

for (const iters of [8, 30]) {
  const runs = 300, warmup = 20;
  let total = 0, inF = 0;
  const timed = (z, out, a) => { const s = performance.now(); f(z, out, a); inF += performance.now() - s; };
  for (let r = 0; r < runs + warmup; r++) {
    if (r === warmup) { total = 0; inF = 0; }
    const z = new Float32Array(n);
    const s = performance.now();
    // tol 1e-12: never converges early, so every run takes exactly `iters` evaluations
    await solve(timed, 1, n, z, { method: 'broyden', tol: 1e-12, maxIter: iters, history }, ws);
    total += performance.now() - s;
  }
  const solver = (total - inF) / runs;
  console.log(`${kernel}: n ${n}, m ${history}, ${iters} evaluations: solver ${solver.toFixed(3)} ms per solve (${(solver / iters * 1e6 / n).toFixed(1)} ns per element per iteration), f ${(inF / runs).toFixed(3)} ms`);
}
