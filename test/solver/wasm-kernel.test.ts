// The WebAssembly kernels against the scalar TypeScript reference (kernel 'js'):
// same iterates after k steps, same stops, restarts and divergence.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultSolverKernel, solve, SolverWorkspace, type FixedPointFn, type SolverKernel, type SolverMethod, type SolverOptions } from '../../src/solver/index.js';
import { kernelLoadError } from '../../src/solver/wasm-kernels.js';
import { batchedMap, randomMatrix, randomVector } from './maps.js';
import { relDiffMax } from '../helpers/float.js';

const METHODS: SolverMethod[] = ['broyden', 'anderson', 'fixed-point'];

async function run(kernel: SolverKernel, f: FixedPointFn, batch: number, n: number, opts: Partial<SolverOptions>, z0?: Float32Array) {
  const o = { history: 8, ...opts };
  const ws = new SolverWorkspace(o.method ?? 'broyden', batch, n, o.history, kernel);
  const z = z0 ? Float32Array.from(z0) : new Float32Array(batch * n);
  const res = await solve(f, batch, n, z, o, ws);
  return { z, res };
}


describe('wasm solver kernels', () => {
  it('load in this build (npm run build compiles both)', () => {
    expect(kernelLoadError('f64')).toBe('');
    expect(kernelLoadError('f32')).toBe('');
    expect(defaultSolverKernel()).toBe('wasm');
    expect(new SolverWorkspace('broyden', 1, 4, 2, 'wasm-f32').kernel).toBe('wasm-f32');
  });
});

// 'wasm' does the reference's float64 arithmetic, so its residual traces match to 1e-5 down to
// 1e-8; 'wasm-f32' rounds every operation to float32, so below a couple of float32 ulps per
// element (2·1.2e-7·max|z|·√n) a residual is rounding noise on either side.
for (const kernel of ['wasm', 'wasm-f32'] as const) {
describe(`${kernel} solver kernel against the js reference`, () => {
  const f32 = kernel === 'wasm-f32';

  for (const method of METHODS) {
    it(`${method}: iterates after k steps match the js reference within 1e-5 (random ${f32 ? 'contractive ' : ''}maps, odd and even n, batches)`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 37 }), fc.integer({ min: 1, max: 4 }), fc.double({ min: 0.2, max: f32 ? 0.9 : 1.6, noNaN: true }),
          fc.integer({ min: 1, max: 25 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 1e6 }),
          async (n, batch, norm, k, history, seed) => {
            const W = randomMatrix(n, norm, seed);
            const b = randomVector(n, seed + 1, 2);
            const f = batchedMap(W, b, n, Math.tanh, [1, 0.5, 1.3, 0.8]);
            const opts: Partial<SolverOptions> = { method, maxIter: k, tol: 1e-30, stopMode: 'abs', history, trace: true };
            const js = await run('js', f, batch, n, opts);
            const wasm = await run(kernel, f, batch, n, opts);
            expect(relDiffMax(wasm.z, js.z)).toBeLessThanOrEqual(1e-5);
            expect(Array.from(wasm.res.diverged)).toEqual(Array.from(js.res.diverged));
            let zmax = 0;
            for (const v of js.z) zmax = Math.max(zmax, Math.abs(v));
            const floor = f32 ? 2 * 1.2e-7 * Math.max(zmax, 1) * Math.sqrt(n) : 1e-8;
            for (let s = 0; s < batch; s++) {
              const it = js.res.iterations[s], iw = wasm.res.iterations[s];
              if (!f32 || it === iw) { expect(iw).toBe(it); continue; }
              // With tol 1e-30 the only early stop is a residual of exactly 0, reached by rounding:
              // the run that went on must already have been at float32 noise there.
              const [short, longTrace] = it < iw ? [js, wasm.res.trace![s]] : [wasm, js.res.trace![s]];
              expect(short.res.residual[s]).toBe(0);
              expect(longTrace[Math.min(it, iw) - 1]).toBeLessThanOrEqual(floor);
            }
            for (let s = 0; s < batch; s++) {
              const tj = js.res.trace![s], tw = wasm.res.trace![s];
              // In float32, a secant step's Δg cancels: residuals agree to 1e-4 relative, not 1e-5.
              const rel = f32 ? 1e-4 : 1e-5;
              for (let i = 0; i < Math.min(tj.length, tw.length); i++) expect(Math.abs(tw[i] - tj[i])).toBeLessThanOrEqual(Math.max(rel * tj[i], floor));
            }
          }),
        { numRuns: 60, seed: 7 },
      );
    });

    it(`${method}: per-sample stopping gives the same iteration counts and convergence flags`, async () => {
      const n = 30;
      for (let seed = 1; seed <= 10; seed++) {
        const W = randomMatrix(n, 0.9, seed);
        const b = randomVector(n, seed + 50, 2);
        const f = batchedMap(W, b, n, Math.tanh, [0.2, 1, 0.6, 1.1, 0.9]);
        const opts: Partial<SolverOptions> = { method, tol: 1e-5, stopMode: 'rel', maxIter: 60 };
        const js = await run('js', f, 5, n, opts);
        const wasm = await run(kernel, f, 5, n, opts);
        for (let s = 0; s < 5; s++) expect(Math.abs(wasm.res.iterations[s] - js.res.iterations[s])).toBeLessThanOrEqual(1);
        expect(Array.from(wasm.res.converged)).toEqual(Array.from(js.res.converged));
        expect(relDiffMax(wasm.z, js.z)).toBeLessThanOrEqual(1e-5);
      }
    });

    it(`${method}: NaN from f is diverged with the best finite iterate kept, as in the reference`, async () => {
      const n = 9;
      let calls = 0;
      const f: FixedPointFn = (z, out) => { calls++; for (let i = 0; i < z.length; i++) out[i] = calls >= 3 ? NaN : 0.5 * z[i] + 1; };
      calls = 0;
      const js = await run('js', f, 1, n, { method, tol: 1e-12, maxIter: 50 });
      calls = 0;
      const wasm = await run(kernel, f, 1, n, { method, tol: 1e-12, maxIter: 50 });
      expect(wasm.res.diverged[0]).toBe(1);
      expect(wasm.res.iterations[0]).toBe(js.res.iterations[0]);
      expect(Array.from(wasm.z)).toEqual(Array.from(js.z));
    });
  }

  it('restarts on hard maps happen as in the reference (same counts, same outcomes)', async () => {
    const n = 40;
    let restartsSeen = 0;
    for (let seed = 1; seed <= 20; seed++) {
      const W = randomMatrix(n, 1.9 * Math.sqrt(n / 3), seed);
      const b = randomVector(n, seed + 1000);
      const f = batchedMap(W, b, n, Math.tanh);
      const opts: Partial<SolverOptions> = { method: 'broyden', history: 4, tol: 1e-5, stopMode: 'abs', maxIter: 300, trace: true };
      const js = await run('js', f, 1, n, opts);
      const wasm = await run(kernel, f, 1, n, opts);
      expect(Math.abs(wasm.res.iterations[0] - js.res.iterations[0])).toBeLessThanOrEqual(1);
      expect(wasm.res.converged[0]).toBe(js.res.converged[0]);
      expect(wasm.res.diverged[0]).toBe(js.res.diverged[0]);
      // A climb past 10× the best residual is what triggers a restart.
      const t = js.res.trace![0];
      let best = Infinity;
      for (const r of t) { if (r > 10 * best) restartsSeen++; best = Math.min(best, r); }
    }
    expect(restartsSeen).toBeGreaterThan(0);
  });

  it(f32 ? 'broyden with Armijo line search on hard maps: same outcomes, answers within the reference\'s own float32 sensitivity' : 'broyden with Armijo line search takes the same steps as the reference', async () => {
    const n = 23;
    for (let seed = 1; seed <= 8; seed++) {
      // Hard maps (as in the restart test): full Broyden steps often overshoot, so the search backtracks.
      const W = randomMatrix(n, 1.9 * Math.sqrt(n / 3), seed);
      const b = randomVector(n, seed + 9);
      const f = batchedMap(W, b, n, Math.tanh, [1, 0.7]);
      const opts: Partial<SolverOptions> = { method: 'broyden', lineSearch: true, tol: 1e-6, stopMode: 'abs', maxIter: 80, history: 5 };
      const js = await run('js', f, 2, n, opts);
      const wasm = await run(kernel, f, 2, n, opts);
      if (!f32) {
        expect(Array.from(wasm.res.iterations)).toEqual(Array.from(js.res.iterations));
        expect(relDiffMax(wasm.z, js.z)).toBeLessThanOrEqual(1e-5);
        continue;
      }
      // These maps are ill-conditioned (and Armijo's accept/reject is a threshold), so float32
      // rounding changes the path. What is promised: the same outcome, and a converged answer as
      // close to the reference's as the reference's own answer moves when b moves by one float32
      // ulp (×10), never further than 1e-3.
      expect(Array.from(wasm.res.converged)).toEqual(Array.from(js.res.converged));
      const moved = await run('js', batchedMap(W, b.map((v) => v * (1 + 2 ** -23)), n, Math.tanh, [1, 0.7]), 2, n, opts);
      for (let s = 0; s < 2; s++) {
        if (!js.res.converged[s]) continue;
        const row = (z: Float32Array) => z.subarray(s * n, (s + 1) * n);
        const bound = Math.max(1e-5, 10 * relDiffMax(row(moved.z), row(js.z)));
        expect(bound).toBeLessThanOrEqual(1e-3);
        expect(relDiffMax(row(wasm.z), row(js.z))).toBeLessThanOrEqual(bound);
      }
    }
  });

  it('a diverging fixed-point map trips divergence detection at the same step', async () => {
    const n = 5;
    const f: FixedPointFn = (z, out) => { for (let i = 0; i < z.length; i++) out[i] = 2 * z[i] + 1; };
    const js = await run('js', f, 1, n, { method: 'fixed-point', tol: 1e-6, maxIter: 100, divergenceFactor: 1e3 });
    const wasm = await run(kernel, f, 1, n, { method: 'fixed-point', tol: 1e-6, maxIter: 100, divergenceFactor: 1e3 });
    expect(wasm.res.diverged[0]).toBe(1);
    expect(wasm.res.iterations[0]).toBe(js.res.iterations[0]);
  });
});
}

// The float32 kernels' reductions (norms and dot products decide stops, steps and Broyden
// denominators) against float64 sums of the same float32 rows: within 1e-6 of Σ|terms|.
describe('wasm-f32 reductions', () => {
  for (const n of [1, 7, 513, 6272]) {
    it(`residual, dot products and Gram row at n = ${n}`, () => {
      const m = 3, ws = new SolverWorkspace('broyden', 1, n, m, 'wasm-f32'), w = ws.wasm!;
      const rnd = randomVector(5 * n + 2 * m * n, n, 3);
      let r = 0;
      for (const a of [ws.z, ws.fz, ws.zPrev, ws.gPrev]) for (let i = 0; i < n; i++) a[i] = rnd[r++];
      for (let i = 0; i < m * n; i++) { ws.histA[i] = rnd[r++]; ws.histB[i] = rnd[r++]; }
      const near = (got: number, exact: number, scale: number) => expect(Math.abs(got - exact)).toBeLessThanOrEqual(1e-6 * scale + 1e-30);

      w.k.residual(w.z, w.fz, w.g, n, w.out);
      let gg = 0, ff = 0;
      for (let i = 0; i < n; i++) {
        expect(ws.g[i]).toBe(Math.fround(ws.fz[i] - ws.z[i]));
        gg += ws.g[i] * ws.g[i];
        ff += ws.fz[i] * ws.fz[i];
      }
      near(w.outView[0], gg, gg);
      near(w.outView[1], ff, ff);

      w.k.broydenDots(w.z, w.zPrev, w.p, w.g, w.histA, w.histB, n * 4, m, n, w.coef);
      for (let j = 0; j < m; j++) {
        let b = 0, bs = 0, c = 0, cs = 0;
        for (let i = 0; i < n; i++) {
          expect(ws.p[i]).toBe(Math.fround(ws.z[i] - ws.zPrev[i]));
          b += ws.histA[j * n + i] * ws.p[i]; bs += Math.abs(ws.histA[j * n + i] * ws.p[i]);
          c += ws.histB[j * n + i] * ws.g[i]; cs += Math.abs(ws.histB[j * n + i] * ws.g[i]);
        }
        near(w.coefView[2 * j], b, bs);
        near(w.coefView[2 * j + 1], c, cs);
      }

      w.k.andersonGram(w.histA, w.histB, n * 4, w.g, m, n, w.coef);
      for (let j = 0; j < m; j++) {
        let s = 0, ss = 0;
        for (let i = 0; i < n; i++) {
          const t = Math.fround(ws.histB[j * n + i] - ws.histA[j * n + i]) * ws.g[i];
          s += t; ss += Math.abs(t);
        }
        near(w.coefView[j], s, ss);
      }
    });
  }
});
