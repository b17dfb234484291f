// Design comparison for docs/solver.md: the bulk of one Broyden update (two GEMV
// passes over U and V: t = -dz + (U dz)V, q = g - (V g)U) as an ONNX Runtime graph
// versus the wasm kernels, float64 and float32 (broydenDots + broydenCombine), and the scalar JS
// reference, at the Fashion-MNIST state size. Runs alternate; CPU time per call.
//   npm run build && /usr/bin/python3 bench/ort-step-graph.py /tmp/step.onnx && node bench/ort-vs-wasm.mjs /tmp/step.onnx
import * as ort from 'onnxruntime-node';
import { SolverWorkspace } from '../dist/solver/index.js';

const [path = '/tmp/step.onnx', nArg = '6272', mArg = '8'] = process.argv.slice(2);
const n = Number(nArg), m = Number(mArg);
const cpu = () => { const u = process.cpuUsage(); return u.user + u.system; };
const session = await ort.InferenceSession.create(path, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' });
const rnd = (len) => Float32Array.from({ length: len }, () => Math.random() - 0.5);

for (const B of [1, 32]) {
  const ws = new SolverWorkspace('broyden', B, n, m, 'wasm');
  ws.z.set(rnd(B * n)); ws.zPrev.set(rnd(B * n)); ws.g.set(rnd(B * n)); ws.gPrev.set(rnd(B * n)); ws.histA.set(rnd(B * m * n)); ws.histB.set(rnd(B * m * n));
  const js = new SolverWorkspace('broyden', B, n, m, 'js');
  const f32 = new SolverWorkspace('broyden', B, n, m, 'wasm-f32');
  for (const k of ['z', 'zPrev', 'g', 'gPrev', 'histA', 'histB']) { js[k].set(ws[k]); f32[k].set(ws[k]); }
  const feeds = {
    dz: new ort.Tensor('float32', rnd(B * n), [B, 1, n]), g: new ort.Tensor('float32', ws.g, [B, 1, n]),
    U: new ort.Tensor('float32', ws.histA, [B, m, n]), V: new ort.Tensor('float32', ws.histB, [B, m, n]),
  };
  const fetches = { t: new ort.Tensor('float32', new Float32Array(B * n), [B, 1, n]), q: new ort.Tensor('float32', new Float32Array(B * n), [B, 1, n]) };
  const row = n * 4;
  const wasmStep = (x) => () => {
    const w = x.wasm, k = w.k;
    for (let i = 0; i < B; i++) {
      const U = w.histA + i * m * row, V = w.histB + i * m * row, o = i * row;
      k.broydenDots(w.z + o, w.zPrev + o, w.p + o, w.g + o, U, V, row, m, n, w.coef);
      for (let j = 0; j < 2 * m; j++) w.coef32View[j] = w.coefView[j];
      k.broydenCombine(w.z + o, w.zPrev + o, w.p + o, w.g + o, w.gPrev + o, U, V, row, w.f32 ? w.coef32 : w.coef, m, n, w.scratch, w.out);
    }
  };
  // The same algebra as the JS reference's inner loops (one dot pass and one axpy pass per update).
  const s = new Float64Array(2 * n), c = new Float64Array(m);
  const jsStep = () => {
    const U = js.histA, V = js.histB, z = js.z, zp = js.zPrev, g = js.g, p = js.p;
    for (let i = 0; i < B; i++) {
      const o = i * n, base = i * m * n;
      for (let kk = 0; kk < n; kk++) { const dz = z[o + kk] - zp[o + kk]; p[o + kk] = dz; s[kk] = g[o + kk]; s[n + kk] = -dz; }
      for (let j = 0; j < m; j++) {
        const jo = base + j * n; let b = 0, cc = 0;
        for (let kk = 0; kk < n; kk++) { b += U[jo + kk] * p[o + kk]; cc += V[jo + kk] * g[o + kk]; }
        c[j] = cc;
        for (let kk = 0; kk < n; kk++) { s[n + kk] += b * V[jo + kk]; s[kk] -= cc * U[jo + kk]; }
      }
    }
  };
  const ortStep = () => session.run(feeds, fetches);
  const reps = B === 1 ? 200 : 10;
  const res = { ort: Infinity, wasm: Infinity, 'wasm-f32': Infinity, js: Infinity };
  for (let round = 0; round < 5; round++) {
    for (const [name, fn] of [['ort', ortStep], ['wasm', wasmStep(ws)], ['wasm-f32', wasmStep(f32)], ['js', jsStep]]) {
      for (let r = 0; r < 3; r++) await fn();
      const c0 = cpu(); const t0 = performance.now();
      for (let r = 0; r < reps; r++) await fn();
      res[name] = Math.min(res[name], (cpu() - c0) / reps);
    }
  }
  const bytes = 2 * m * n * 4 * 2 * B; // U and V read twice (coefficients, then combination)
  const per = (x) => (x / B).toFixed(1);
  console.log(`batch ${B}, n ${n}, m ${m}: CPU µs per update per sample — ORT graph ${per(res.ort)}, wasm ${per(res.wasm)}, wasm-f32 ${per(res['wasm-f32'])}, js ${per(res.js)}; history read ${(bytes / 1e6).toFixed(2)} MB → wasm ${(bytes / res.wasm / 1e3).toFixed(1)} GB/s, wasm-f32 ${(bytes / res['wasm-f32'] / 1e3).toFixed(1)} GB/s`);
}
await session.release();
