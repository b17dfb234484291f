// The WebAssembly kernels against the scalar TypeScript reference (kernel 'js'):
// same iterates after k steps, same stops, restarts and divergence.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultSolverKernel, solve, SolverWorkspace, type FixedPointFn, type SolverKernel, type SolverMethod, type SolverOptions } from '../../src/solver/index.js';
import { kernelLoadError } from '../../src/solver/wasm-kernels.js';
import { batchedMap, randomMatrix, randomVector } from './maps.js';

const METHODS: SolverMethod[] = ['broyden', 'anderson', 'fixed-point'];

async function run(kernel: SolverKernel, f: FixedPointFn, batch: number, n: number, opts: Partial<SolverOptions>, z0?: Float32Array) {
  const o = { history: 8, ...opts };
  const ws = new SolverWorkspace(o.method ?? 'broyden', batch, n, o.history, kernel);
  const z = z0 ? Float32Array.from(z0) : new Float32Array(batch * n);
  const res = await solve(f, batch, n, z, o, ws);
  return { z, res };
}

/** max |a − b| / max |b| over the whole batch. */
function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return d / Math.max(m, 1e-30);
}

describe('wasm solver kernels', () => {
  it('load in this build (npm run build compiles them)', () => {
    expect(kernelLoadError()).toBe('');
    expect(defaultSolverKernel()).toBe('wasm');
  });

  for (const method of METHODS) {
    it(`${method}: iterates after k steps match the js reference within 1e-5 (random maps, odd and even n, batches)`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 37 }), fc.integer({ min: 1, max: 4 }), fc.double({ min: 0.2, max: 1.6, noNaN: true }),
          fc.integer({ min: 1, max: 25 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 1e6 }),
          async (n, batch, norm, k, history, seed) => {
            const W = randomMatrix(n, norm, seed);
            const b = randomVector(n, seed + 1, 2);
            const f = batchedMap(W, b, n, Math.tanh, [1, 0.5, 1.3, 0.8]);
            const opts: Partial<SolverOptions> = { method, maxIter: k, tol: 1e-30, stopMode: 'abs', history, trace: true };
            const js = await run('js', f, batch, n, opts);
            const wasm = await run('wasm', f, batch, n, opts);
            expect(relDiff(wasm.z, js.z)).toBeLessThanOrEqual(1e-5);
            expect(Array.from(wasm.res.iterations)).toEqual(Array.from(js.res.iterations));
            expect(Array.from(wasm.res.diverged)).toEqual(Array.from(js.res.diverged));
            for (let s = 0; s < batch; s++) {
              const tj = js.res.trace![s], tw = wasm.res.trace![s];
              for (let i = 0; i < tj.length; i++) expect(Math.abs(tw[i] - tj[i])).toBeLessThanOrEqual(1e-5 * Math.max(tj[i], 1e-3));
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
        const wasm = await run('wasm', f, 5, n, opts);
        for (let s = 0; s < 5; s++) expect(Math.abs(wasm.res.iterations[s] - js.res.iterations[s])).toBeLessThanOrEqual(1);
        expect(Array.from(wasm.res.converged)).toEqual(Array.from(js.res.converged));
        expect(relDiff(wasm.z, js.z)).toBeLessThanOrEqual(1e-5);
      }
    });

    it(`${method}: NaN from f is diverged with the best finite iterate kept, as in the reference`, async () => {
      const n = 9;
      let calls = 0;
      const f: FixedPointFn = (z, out) => { calls++; for (let i = 0; i < z.length; i++) out[i] = calls >= 3 ? NaN : 0.5 * z[i] + 1; };
      calls = 0;
      const js = await run('js', f, 1, n, { method, tol: 1e-12, maxIter: 50 });
      calls = 0;
      const wasm = await run('wasm', f, 1, n, { method, tol: 1e-12, maxIter: 50 });
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
      const wasm = await run('wasm', f, 1, n, opts);
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

  it('broyden with Armijo line search takes the same steps as the reference', async () => {
    const n = 23;
    for (let seed = 1; seed <= 8; seed++) {
      // Hard maps (as in the restart test): full Broyden steps often overshoot, so the search backtracks.
      const W = randomMatrix(n, 1.9 * Math.sqrt(n / 3), seed);
      const b = randomVector(n, seed + 9);
      const f = batchedMap(W, b, n, Math.tanh, [1, 0.7]);
      const opts: Partial<SolverOptions> = { method: 'broyden', lineSearch: true, tol: 1e-6, stopMode: 'abs', maxIter: 80, history: 5 };
      const js = await run('js', f, 2, n, opts);
      const wasm = await run('wasm', f, 2, n, opts);
      expect(Array.from(wasm.res.iterations)).toEqual(Array.from(js.res.iterations));
      expect(relDiff(wasm.z, js.z)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('a diverging fixed-point map trips divergence detection at the same step', async () => {
    const n = 5;
    const f: FixedPointFn = (z, out) => { for (let i = 0; i < z.length; i++) out[i] = 2 * z[i] + 1; };
    const js = await run('js', f, 1, n, { method: 'fixed-point', tol: 1e-6, maxIter: 100, divergenceFactor: 1e3 });
    const wasm = await run('wasm', f, 1, n, { method: 'fixed-point', tol: 1e-6, maxIter: 100, divergenceFactor: 1e3 });
    expect(wasm.res.diverged[0]).toBe(1);
    expect(wasm.res.iterations[0]).toBe(js.res.iterations[0]);
  });
});
