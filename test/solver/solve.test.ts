import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { solve, SolverWorkspace, type FixedPointFn, type SolverMethod } from '../../src/solver/index.js';
import { expectClose } from '../helpers/float.js';
import { batchedMap, linearFixedPoint, nearIdentity, randomMatrix, randomVector, referenceFixedPoint } from './maps.js';

const METHODS: SolverMethod[] = ['broyden', 'anderson', 'fixed-point'];
const identity = (x: number) => x;

describe('solve on a contractive linear map', () => {
  const n = 12;
  const W = randomMatrix(n, 0.6, 1);
  const b = randomVector(n, 2);
  const exact = linearFixedPoint(W, b, n);

  for (const method of METHODS) {
    it(`${method} reaches (I−W)⁻¹b`, async () => {
      const batch = 3;
      const z = new Float32Array(batch * n);
      const res = await solve(batchedMap(W, b, n, identity), batch, n, z, { method, tol: 1e-6, stopMode: 'abs', maxIter: 200 });
      for (let s = 0; s < batch; s++) {
        expect(res.converged[s]).toBe(1);
        expect(res.diverged[s]).toBe(0);
        expect(res.residual[s]).toBeLessThan(1e-6);
        expectClose(z.subarray(s * n, (s + 1) * n), exact, 1e-5);
      }
    });
  }

  it('broyden needs far fewer evaluations than fixed-point iteration', async () => {
    const slow = nearIdentity(n, 0.9, 0.05, 11);
    const run = async (method: SolverMethod) => {
      const z = new Float32Array(n);
      return (await solve(batchedMap(slow, b, n, identity), 1, n, z, { method, tol: 1e-6, stopMode: 'abs', maxIter: 500 })).iterations[0];
    };
    const [broyden, picard] = [await run('broyden'), await run('fixed-point')];
    expect(broyden * 3).toBeLessThan(picard);
  });

  it('broyden with line search also converges', async () => {
    const z = new Float32Array(n);
    const res = await solve(batchedMap(W, b, n, identity), 1, n, z, { method: 'broyden', lineSearch: true, tol: 1e-6, stopMode: 'abs', maxIter: 200 });
    expect(res.converged[0]).toBe(1);
    expectClose(z, exact, 1e-5);
  });
});

describe('solve on random contractive nonlinear maps (property)', () => {
  for (const method of METHODS) {
    it(`${method} matches a float64 reference`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 2, max: 24 }), fc.double({ min: 0.05, max: 0.8, noNaN: true }), fc.integer({ min: 0, max: 1e6 }), async (n, norm, seed) => {
          const W = randomMatrix(n, norm, seed);
          const b = randomVector(n, seed + 7, 2);
          const ref = referenceFixedPoint(W, b, n, Math.tanh, 400);
          const z = new Float32Array(n);
          const res = await solve(batchedMap(W, b, n, Math.tanh), 1, n, z, { method, tol: 1e-6, stopMode: 'abs', maxIter: 400 });
          expect(res.converged[0]).toBe(1);
          expectClose(z, ref, 1e-5);
        }),
        { numRuns: 40, seed: 42 },
      );
    });
  }
});

describe('per-sample behaviour in a batch', () => {
  it('easy samples stop early while hard ones go on, each converging on its own', async () => {
    const n = 16;
    const W = nearIdentity(n, 0.95, 0.05, 3);
    const b = randomVector(n, 4);
    const scales = [0.05, 0.95, 0.3, 0.99];
    const seenActive: number[][] = [];
    const base = batchedMap(W, b, n, Math.tanh, scales);
    const f: FixedPointFn = (z, out, active) => { seenActive.push(Array.from(active)); return base(z, out, active); };
    const z = new Float32Array(scales.length * n);
    const res = await solve(f, scales.length, n, z, { method: 'fixed-point', tol: 1e-5, stopMode: 'rel', maxIter: 2000 });
    expect(Array.from(res.converged)).toEqual([1, 1, 1, 1]);
    expect(res.iterations[0]).toBeLessThan(res.iterations[2]);
    expect(res.iterations[2]).toBeLessThan(res.iterations[1]);
    expect(res.iterations[1]).toBeLessThan(res.iterations[3]);
    // The batch keeps going for the slowest sample only.
    expect(res.calls).toBe(Math.max(...res.iterations));
    expect(seenActive[res.calls - 1]).toEqual([0, 0, 0, 1]);
    for (let s = 0; s < scales.length; s++) expect(res.residual[s]).toBeLessThan(1e-5);
  });

  it('returns a per-sample residual trace on request', async () => {
    const n = 8;
    const W = randomMatrix(n, 0.5, 5);
    const b = randomVector(n, 6);
    const z = new Float32Array(2 * n);
    const res = await solve(batchedMap(W, b, n, Math.tanh, [0.2, 0.9]), 2, n, z, { method: 'broyden', tol: 1e-6, maxIter: 100, trace: true });
    expect(res.trace).toHaveLength(2);
    for (let s = 0; s < 2; s++) {
      expect(res.trace![s].length).toBe(res.iterations[s]);
      expect(Math.min(...res.trace![s])).toBe(res.residual[s]);
    }
  });
});

describe('restart guard', () => {
  it('rescues ring-buffer Broyden on hard maps where overwriting old updates blows up', async () => {
    // tanh maps with gain 1.9: locally contractive at the fixed point, but far from it
    // the limited-memory inverse-Jacobian estimate goes bad once the ring wraps.
    const n = 40;
    const outcome = { withRestart: 0, without: 0, divergedWithout: 0 };
    for (let seed = 1; seed <= 40; seed++) {
      const W = randomMatrix(n, 1.9 * Math.sqrt(n / 3), seed);
      const b = randomVector(n, seed + 1000);
      for (const restartFactor of [10, Infinity]) {
        const z = new Float32Array(n);
        const res = await solve(batchedMap(W, b, n, Math.tanh), 1, n, z, { method: 'broyden', history: 4, tol: 1e-5, stopMode: 'abs', maxIter: 300, restartFactor });
        if (restartFactor === 10) outcome.withRestart += res.converged[0];
        else { outcome.without += res.converged[0]; outcome.divergedWithout += res.diverged[0]; }
      }
    }
    expect(outcome.divergedWithout).toBeGreaterThan(0);
    expect(outcome.withRestart).toBeGreaterThan(outcome.without);
    expect(outcome.withRestart).toBeGreaterThanOrEqual(38);
  });
});

describe('failure cases', () => {
  const n = 4;
  for (const method of METHODS) {
    it(`${method}: a map with no fixed point is reported as not converged`, async () => {
      const f: FixedPointFn = (z, out) => { for (let i = 0; i < z.length; i++) out[i] = z[i] + 1; };
      const z = new Float32Array(n);
      const res = await solve(f, 1, n, z, { method, tol: 1e-4, stopMode: 'abs', maxIter: 25 });
      expect(res.converged[0]).toBe(0);
      expect(res.residual[0]).toBeGreaterThan(1e-4);
    });

    it(`${method}: NaN from f is caught and reported as diverged`, async () => {
      let calls = 0;
      const f: FixedPointFn = (z, out) => {
        calls++;
        for (let i = 0; i < z.length; i++) out[i] = calls >= 3 ? NaN : 0.5 * z[i] + 1;
      };
      const z = new Float32Array(n);
      const res = await solve(f, 1, n, z, { method, tol: 1e-9, maxIter: 50 });
      expect(res.converged[0]).toBe(0);
      expect(res.diverged[0]).toBe(1);
      expect(Number.isFinite(res.residual[0])).toBe(true);
      for (const v of z) expect(Number.isFinite(v)).toBe(true);
    });
  }

  it('fixed-point iteration on an expanding map is reported as diverged', async () => {
    const f: FixedPointFn = (z, out) => { for (let i = 0; i < z.length; i++) out[i] = 2 * z[i] + 1; };
    const z = new Float32Array(n);
    const res = await solve(f, 1, n, z, { method: 'fixed-point', tol: 1e-6, maxIter: 100, divergenceFactor: 1e3 });
    expect(res.diverged[0]).toBe(1);
    expect(res.converged[0]).toBe(0);
  });

  it('anderson survives a singular least-squares system', async () => {
    // A constant map makes every residual difference collinear: the Gram matrix is rank one.
    const f: FixedPointFn = (z, out) => { out.fill(3); };
    const z = new Float32Array(n);
    const res = await solve(f, 1, n, z, { method: 'anderson', tol: 1e-6, stopMode: 'abs', maxIter: 20, andersonLambda: 0 });
    expect(res.converged[0]).toBe(1);
    expectClose(z, [3, 3, 3, 3], 1e-6);
  });

  it('anderson falls back to a plain step when its bordered system really is singular', async () => {
    // One state element and a window of 3: from the third stored pair on, GGᵀ is 3×3 of rank one,
    // and with λ = 0 the bordered system is singular in exact arithmetic. Without the fallback
    // the step is NaN and the sample is marked diverged.
    const f: FixedPointFn = (z, out) => { out[0] = Math.cos(z[0]); };
    const z = new Float32Array(1);
    const res = await solve(f, 1, 1, z, { method: 'anderson', history: 3, tol: 1e-6, stopMode: 'abs', maxIter: 60, andersonLambda: 0, trace: true });
    expect(res.diverged[0]).toBe(0);
    expect(res.converged[0]).toBe(1);
    expect(res.iterations[0]).toBeGreaterThan(3); // the solve ran into the singular systems
    expect(Math.abs(z[0] - 0.7390851332)).toBeLessThan(1e-5);
  });

  it('per-sample tolerances and caps stop each row on its own', async () => {
    const W = randomMatrix(n, 0.5, 11), b = randomVector(n, 12);
    const f = batchedMap(W, b, n, Math.tanh);
    const z = new Float32Array(3 * n);
    const res = await solve(f, 3, n, z, { method: 'broyden', tol: 1e-9, stopMode: 'abs', sampleTol: [1e-1, 1e-6, 1e-6], sampleMaxIter: [50, 50, 2], trace: true });
    expect(res.converged[0]).toBe(1);
    expect(res.converged[1]).toBe(1);
    expect(res.iterations[0]).toBeLessThan(res.iterations[1]);
    expect(res.residual[1]).toBeLessThan(1e-6);
    expect(res.iterations[2]).toBe(2);
    expect(res.converged[2]).toBe(0);
    await expect(solve(f, 3, n, new Float32Array(3 * n), { sampleTol: [1e-3] })).rejects.toThrow(/sampleTol has 1 values/);
    await expect(solve(f, 3, n, new Float32Array(3 * n), { sampleMaxIter: [1, 0, 2] })).rejects.toThrow(RangeError);
  });

  it('shouldStop ends the solve between iterations', async () => {
    const f: FixedPointFn = (z, out) => { for (let i = 0; i < z.length; i++) out[i] = z[i] + 1; };
    let polls = 0;
    const z = new Float32Array(n);
    const res = await solve(f, 1, n, z, { method: 'broyden', maxIter: 1000, shouldStop: () => ++polls > 3 });
    expect(res.stopped).toBe(true);
    expect(res.calls).toBe(4);
    expect(res.converged[0]).toBe(0);
  });

  it('rejects invalid options with RangeError', async () => {
    const f: FixedPointFn = () => {};
    await expect(solve(f, 1, 2, new Float32Array(2), { tol: -1 })).rejects.toThrow(RangeError);
    await expect(solve(f, 1, 2, new Float32Array(2), { maxIter: 0 })).rejects.toThrow(/maxIter/);
    await expect(solve(f, 1, 2, new Float32Array(3))).rejects.toThrow(/batch × n/);
  });
});

describe('constant memory', () => {
  it('workspace size depends on batch, n and history, not on the iteration cap', () => {
    const a = new SolverWorkspace('broyden', 2, 1000, 8);
    const b = new SolverWorkspace('broyden', 2, 1000, 16);
    // U and V: 2 · batch · m · n float32 values; doubling m adds exactly that.
    expect(b.byteLength - a.byteLength).toBe(2 * 2 * 8 * 1000 * 4 + 8 * 8);
    // …and nothing else in it scales with the problem beyond a fixed number of batch × n rows.
    expect(a.byteLength).toBeLessThan((6 + 2 * 8) * 2 * 1000 * 4 + 2 * 1000 * 8 + 4096);
  });

  it('peak buffer memory during a solve does not grow with maxIter', async () => {
    const n = 20000;
    const peakFor = async (maxIter: number) => {
      const before = process.memoryUsage().arrayBuffers;
      let peak = 0;
      const f: FixedPointFn = (z, out, active) => {
        for (let i = 0; i < z.length; i++) out[i] = z[i] + 1; // never converges: runs to the cap
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
        void active;
      };
      const z = new Float32Array(n);
      const res = await solve(f, 1, n, z, { method: 'broyden', history: 4, maxIter, tol: 1e-9 });
      expect(res.iterations[0]).toBe(maxIter);
      return peak;
    };
    const small = await peakFor(10);
    const large = await peakFor(400);
    // A reference-style Broyden would hold 2 · 400 · n float32 (64 MB) here.
    expect(large - small).toBeLessThan(2 * 1024 * 1024);
  });

  it('a workspace passed in is reused', async () => {
    const n = 6;
    const ws = new SolverWorkspace('anderson', 1, n, 5);
    const W = randomMatrix(n, 0.5, 9);
    const b = randomVector(n, 10);
    const z = new Float32Array(n);
    await solve(batchedMap(W, b, n, Math.tanh), 1, n, z, { method: 'anderson', history: 5, tol: 1e-6 }, ws);
    expect(ws.count[0]).toBeGreaterThan(0);
  });
});
