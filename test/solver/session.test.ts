// The solve loop's decisions, on both kernels, on maps small enough to follow by hand:
// residuals (abs and rel), the best iterate, convergence and cap boundaries, divergence
// boundaries, the restart guard, non-finite steps, and SolveSession's slots.
import { describe, expect, it } from 'vitest';
import { resolveSolverOptions, RowEnd, solve, SolveSession, SolverWorkspace, type FixedPointFn, type SolverKernel, type SolverMethod, type SolverOptions } from '../../src/solver/index.js';
import { batchedMap, randomMatrix, randomVector } from './maps.js';

const KERNELS: SolverKernel[] = ['js', 'wasm'];
const METHODS: SolverMethod[] = ['broyden', 'anderson', 'fixed-point'];

/** An elementwise map applied to every active row. */
function elementwise(g: (x: number) => number, n: number): FixedPointFn {
  return (z, out, active) => {
    for (let s = 0; s < active.length; s++) if (active[s]) for (let k = s * n; k < (s + 1) * n; k++) out[k] = g(z[k]);
  };
}

/** solve() on a workspace of `kernel`, recording the rows f was asked to evaluate. */
async function tracked(kernel: SolverKernel, f: FixedPointFn, batch: number, n: number, opts: Partial<SolverOptions>, z0?: ArrayLike<number>) {
  const o = resolveSolverOptions(opts);
  const ws = new SolverWorkspace(o.method, batch, n, o.history, kernel);
  expect(ws.kernel).toBe(kernel);
  const seen: number[][][] = Array.from({ length: batch }, () => []);
  const rec: FixedPointFn = (z, out, active) => {
    for (let s = 0; s < batch; s++) if (active[s]) seen[s].push(Array.from(z.subarray(s * n, (s + 1) * n)));
    return f(z, out, active);
  };
  const z = z0 ? Float32Array.from(z0) : new Float32Array(batch * n);
  const res = await solve(rec, batch, n, z, opts, ws);
  return { res, z, seen, ws };
}

// 1-D map for the restart guard: from z₀ = 0 Broyden (and Anderson with λ = 0) is the secant
// method, z₂ = z₁ − g₁(z₁ − z₀)/(g₁ − g₀). Residuals g = f(z) − z: g(0) = 2, g(2) = 10, and
// z₂ = 2 − 10·2/8 = −0.5 where g(−0.5) = 2 − 2.5 + 200·0.25 + 0.5 = 50: 25× the best (2).
const climb = (x: number) => (x < 0 ? 2 + 5 * x + 200 * x * x : 2 + 5 * x);

describe('the restart guard', () => {
  for (const kernel of KERNELS) {
    for (const method of ['broyden', 'anderson'] as const) {
      it(`${method}/${kernel}: a residual climbing past restartFactor × best sends the row back to its best iterate with its history cleared`, async () => {
        const opts = resolveSolverOptions({ method, tol: 1e-9, stopMode: 'abs', maxIter: 50, andersonLambda: 0, restartFactor: 10 });
        const ws = new SolverWorkspace(method, 1, 1, opts.history, kernel);
        const s = new SolveSession(ws, opts);
        s.admit(0, { tol: 1e-9, maxIter: 50, stopMode: 'abs' });
        const evaluate = () => { ws.fz[0] = climb(ws.z[0]); s.advance(); };
        evaluate(); // at 0: g = 2, the first step is z + g
        expect(ws.z[0]).toBe(2);
        evaluate(); // at 2: g = 10 (5× the best: no restart), secant step
        expect(ws.z[0]).toBeCloseTo(-0.5, 6);
        expect(ws.count[0]).toBeGreaterThan(0);
        expect(ws.head[0]).toBeGreaterThan(0);
        evaluate(); // at −0.5: g = 50 > 10 × 2: restart from z = 0
        expect(ws.z[0]).toBe(0);
        expect(ws.count[0]).toBe(0);
        expect(ws.head[0]).toBe(0);
        expect(ws.restart[0]).toBe(1);
        expect(s.residual[0]).toBe(2);
        expect(s.activeCount).toBe(1);
        evaluate(); // at 0 again: a first step once more
        expect(ws.restart[0]).toBe(0);
        expect(ws.z[0]).toBe(2);
        expect(s.iterations[0]).toBe(4);
        evaluate();
        expect(ws.z[0]).toBeCloseTo(-0.5, 6);
        expect(s.end[0]).toBe(RowEnd.Running);
      });

      it(`${method}/${kernel}: a restart of row 1 touches row 1 only`, async () => {
        // n = 2, both elements alike (so each row moves along the diagonal, where the steps are the
        // 1-D ones). Row 0: z ← 0.5 z + 1 (no restart); row 1: the climbing map.
        const f: FixedPointFn = (z, out, active) => {
          for (let k = 0; k < 2; k++) {
            if (active[0]) out[k] = 0.5 * z[k] + 1;
            if (active[1]) out[2 + k] = climb(z[2 + k]);
          }
        };
        const { seen } = await tracked(kernel, f, 2, 2, { method, tol: 1e-9, stopMode: 'abs', maxIter: 5, andersonLambda: 0, history: 2, restartFactor: 10 });
        expect(seen[1].slice(0, 2)).toEqual([[0, 0], [2, 2]]);
        expect(seen[1][2][0]).toBeCloseTo(-0.5, 6);
        expect(seen[1].slice(3)).toEqual([[0, 0], [2, 2]]);
        // Row 0 is z ← 0.5 z + 1 from 0: 0, then 1, then the secant through them on a line is exact: 2.
        expect(seen[0].slice(0, 3)).toEqual([[0, 0], [1, 1], [2, 2]]);
      });

      it(`${method}/${kernel}: the guard compares with restartFactor × best, strictly`, async () => {
        const run = async (restartFactor: number) => (await tracked(kernel, elementwise(climb, 1), 1, 1, { method, tol: 1e-9, stopMode: 'abs', maxIter: 5, andersonLambda: 0, history: 2, restartFactor })).seen[0].map((r) => r[0]);
        // 50 > 24.9 × 2: restart, the 4th evaluation is back at 0 and the 5th at f(0) = 2.
        const restarted = await run(24.9);
        expect(restarted.slice(0, 2)).toEqual([0, 2]);
        expect(restarted[2]).toBeCloseTo(-0.5, 6);
        expect(restarted.slice(3)).toEqual([0, 2]);
        // 50 = 25 × 2 is not past it: the secant goes on from −0.5 and 2 (Anderson over its
        // last two pairs is the secant too), z₃ = −0.5 − 50·(−2.5)/40 = 2.625.
        for (const factor of [25, Infinity]) {
          const kept = await run(factor);
          expect(kept[3]).toBeCloseTo(2.625, 4);
        }
      });
    }

    it(`fixed-point/${kernel}: never restarts, however far the residual climbs`, async () => {
      // z ← f(z) = 2z + 1 from 0: 0, 1, 3, 7, 15; residuals z + 1 = 1, 2, 4, 8, 16.
      const { seen, res } = await tracked(kernel, elementwise((x) => 2 * x + 1, 1), 1, 1, { method: 'fixed-point', tol: 1e-9, stopMode: 'abs', maxIter: 5, restartFactor: 1.5, divergenceFactor: 1e6, trace: true });
      expect(seen[0].map((r) => r[0])).toEqual([0, 1, 3, 7, 15]);
      expect(Array.from(res.trace![0])).toEqual([1, 2, 4, 8, 16]);
      expect(res.diverged[0]).toBe(0);
    });
  }
});

describe('stopping, per row', () => {
  for (const kernel of KERNELS) {
    it(`${kernel}: divergence is abs residual > divergenceFactor × first abs residual, strictly`, async () => {
      // z ← 2z + 2 from 0: residuals z + 2 = 2, 4, 8, 16, 32. With factor 8 the bound is 16:
      // 16 is not past it, 32 is (5th evaluation); with 7.99, 16 is (4th).
      const f = elementwise((x) => 2 * x + 2, 1);
      const at8 = await tracked(kernel, f, 1, 1, { method: 'fixed-point', tol: 1e-9, stopMode: 'abs', maxIter: 100, divergenceFactor: 8 });
      expect(at8.res.iterations[0]).toBe(5);
      expect(at8.res.diverged[0]).toBe(1);
      expect(at8.res.converged[0]).toBe(0);
      expect(at8.res.residual[0]).toBe(2); // the best, at z₀
      expect(at8.z[0]).toBe(0);
      const below = await tracked(kernel, f, 1, 1, { method: 'fixed-point', tol: 1e-9, stopMode: 'abs', maxIter: 100, divergenceFactor: 7.99 });
      expect(below.res.iterations[0]).toBe(4);
      expect(below.res.diverged[0]).toBe(1);
    });

    it(`${kernel}: divergence is measured in abs residuals even in rel mode`, async () => {
      // Same map; rel residuals (z+2)/(2z+2) fall towards 1/2 while abs ones double.
      const res = (await tracked(kernel, elementwise((x) => 2 * x + 2, 1), 1, 1, { method: 'fixed-point', tol: 1e-9, stopMode: 'rel', maxIter: 100, divergenceFactor: 8 })).res;
      expect(res.iterations[0]).toBe(5);
      expect(res.diverged[0]).toBe(1);
    });

    it(`${kernel}: a first residual below 1e-12 is measured against 1e-12`, async () => {
      // z ← 2z + c, c = 2⁻⁵⁰ ≈ 8.9e-16: residuals c·2ᵏ. The bound is 2 · 1e-12, first passed at
      // c·2¹² ≈ 3.6e-12 (13th evaluation); against c itself it would be passed at the 3rd.
      const c = 2 ** -50;
      const res = (await tracked(kernel, elementwise((x) => 2 * x + c, 1), 1, 1, { method: 'fixed-point', tol: 1e-30, stopMode: 'abs', maxIter: 100, divergenceFactor: 2 })).res;
      expect(res.iterations[0]).toBe(13);
      expect(res.diverged[0]).toBe(1);
    });

    it(`${kernel}: converged means residual < tol, strictly; the cap counts every evaluation`, async () => {
      // z ← z + 0.5: the residual is 0.5 at every iterate.
      const f = elementwise((x) => x + 0.5, 2);
      const equal = await tracked(kernel, f, 1, 2, { method: 'fixed-point', tol: Math.SQRT1_2, stopMode: 'abs', maxIter: 4 });
      expect(equal.res.converged[0]).toBe(0);
      expect(equal.res.iterations[0]).toBe(4);
      expect(equal.res.calls).toBe(4);
      expect(equal.res.diverged[0]).toBe(0);
      const above = await tracked(kernel, f, 1, 2, { method: 'fixed-point', tol: Math.SQRT1_2 * 1.000001, stopMode: 'abs', maxIter: 4 });
      expect(above.res.converged[0]).toBe(1);
      expect(above.res.iterations[0]).toBe(1);
      const once = await tracked(kernel, f, 1, 2, { method: 'fixed-point', tol: 1e-3, stopMode: 'abs', maxIter: 1 });
      expect(once.res.iterations[0]).toBe(1);
      expect(once.res.calls).toBe(1);
    });

    it(`${kernel}: rel residual is ‖f(z) − z‖ / (‖f(z)‖ + 1e-9), abs is ‖f(z) − z‖`, async () => {
      // f(z) = (3, 4) from 0: ‖g‖ = ‖f‖ = 5.
      const constant: FixedPointFn = (_z, out) => { out[0] = 3; out[1] = 4; };
      const rel = await tracked(kernel, constant, 1, 2, { method: 'fixed-point', tol: 1e-6, stopMode: 'rel', maxIter: 1, trace: true });
      expect(rel.res.trace![0][0]).toBe(5 / (5 + 1e-9));
      const abs = await tracked(kernel, constant, 1, 2, { method: 'fixed-point', tol: 1e-6, stopMode: 'abs', maxIter: 1, trace: true });
      expect(abs.res.trace![0][0]).toBe(5);
      // f(z) = 0 at z = (3e-9, 4e-9): ‖g‖ = 5e-9, ‖f‖ = 0, so rel = 5e-9 / 1e-9 = 5.
      const zero: FixedPointFn = (_z, out) => { out.fill(0); };
      const tiny = await tracked(kernel, zero, 1, 2, { method: 'fixed-point', tol: 1e-6, stopMode: 'rel', maxIter: 1 }, [3e-9, 4e-9]);
      expect(tiny.res.residual[0]).toBeCloseTo(5, 5);
      expect(tiny.res.diverged[0]).toBe(0);
    });

    it(`${kernel}: each row keeps its own stop mode, tolerance and cap`, async () => {
      // Two rows of z ← 0.5 z + 1 (fixed point 2) from 0: abs residual 2^(1−k)·… at evaluation k.
      const f = elementwise((x) => 0.5 * x + 1, 1);
      const ws = new SolverWorkspace('fixed-point', 2, 1, 8, kernel);
      const s = new SolveSession(ws, resolveSolverOptions({ method: 'fixed-point' }));
      s.admit(0, { tol: 0.3, maxIter: 10, stopMode: 'abs' });
      s.admit(1, { tol: 0.3, maxIter: 10, stopMode: 'rel' });
      // abs residuals 1, 0.5, 0.25 (z = 0, 1, 1.5); rel: 1/1, 0.5/1.5, 0.25/1.75 = 0.14.
      let evals = 0;
      while (s.activeCount > 0) { f(ws.z, ws.fz, ws.active); s.advance(); evals++; }
      expect(Array.from(s.iterations)).toEqual([3, 3]);
      expect(s.residual[0]).toBe(0.25);
      expect(s.residual[1]).toBeCloseTo(0.25 / 1.75, 9);
      // A tolerance of 0.35 ends the rel row one evaluation earlier (0.5/1.5 = 0.33) but not the abs row.
      s.admit(0, { tol: 0.35, maxIter: 10, stopMode: 'abs' });
      s.admit(1, { tol: 0.35, maxIter: 10, stopMode: 'rel' });
      const endedAt: number[] = [0, 0];
      for (let t = 1; s.activeCount > 0; t++) {
        f(ws.z, ws.fz, ws.active); s.advance();
        for (let e = 0; e < s.endedCount; e++) endedAt[s.ended[e]] = t;
      }
      expect(endedAt).toEqual([3, 2]);
      expect(evals).toBe(3);
    });

    it(`${kernel}: returns the lowest-residual iterate, not the last; on a tie the earlier one`, async () => {
      // z ← 2z + 1 from 0.25: residuals 1.25, 2.75, 5.75: the best is z₀.
      const up = await tracked(kernel, elementwise((x) => 2 * x + 1, 1), 1, 1, { method: 'fixed-point', tol: 1e-9, stopMode: 'abs', maxIter: 3, divergenceFactor: 1e6 }, [0.25]);
      expect(up.z[0]).toBe(0.25);
      expect(up.res.residual[0]).toBe(1.25);
      // z ← 2 − z from 0: 0, 2, 0, … with residual 2 at every one: the first stays the best.
      const tie = await tracked(kernel, elementwise((x) => 2 - x, 1), 1, 1, { method: 'fixed-point', tol: 1e-9, stopMode: 'abs', maxIter: 2 }, [0]);
      expect(tie.seen[0]).toEqual([[0], [2]]);
      expect(tie.z[0]).toBe(0);
      // z ← 0.5 z from 8: 8, 4, 2; residuals 4, 2, 1: the last is the best.
      const down = await tracked(kernel, elementwise((x) => 0.5 * x, 1), 1, 1, { method: 'fixed-point', tol: 1e-9, stopMode: 'abs', maxIter: 3 }, [8]);
      expect(down.z[0]).toBe(2);
      expect(down.res.residual[0]).toBe(1);
    });

    for (const method of METHODS) {
      it(`${method}/${kernel}: NaN at the first evaluation: diverged, residual Infinity, z₀ returned`, async () => {
        const { res, z } = await tracked(kernel, (_z, out) => { out.fill(NaN); }, 2, 2, { method, tol: 1e-6, maxIter: 10 }, [1, 2, 3, 4]);
        expect(Array.from(res.diverged)).toEqual([1, 1]);
        expect(Array.from(res.iterations)).toEqual([1, 1]);
        expect(Array.from(res.residual)).toEqual([Infinity, Infinity]);
        expect(Array.from(z)).toEqual([1, 2, 3, 4]);
      });
    }

    it(`${kernel}: NaN at the last allowed evaluation is diverged, not capped`, async () => {
      let calls = 0;
      const f: FixedPointFn = (z, out) => { calls++; for (let i = 0; i < z.length; i++) out[i] = calls === 3 ? NaN : 0.5 * z[i] + 1; };
      const { res } = await tracked(kernel, f, 1, 2, { method: 'fixed-point', tol: 1e-9, maxIter: 3 });
      expect(res.iterations[0]).toBe(3);
      expect(res.diverged[0]).toBe(1);
    });

    for (const method of ['broyden', 'fixed-point'] as const) {
      it(`${method}/${kernel}: a step that overflows float32 ends the row as diverged with its best iterate`, async () => {
        // z₀ = −3e38, f = 3e38: g = 6e38 overflows float32, so z + g is not finite.
        const { res, z } = await tracked(kernel, (_z, out) => { out.fill(3e38); }, 1, 2, { method, tol: 1e-6, stopMode: 'abs', maxIter: 10 }, [-3e38, -3e38]);
        expect(res.diverged[0]).toBe(1);
        expect(res.converged[0]).toBe(0);
        expect(res.iterations[0]).toBe(1);
        expect(Array.from(z)).toEqual([Math.fround(-3e38), Math.fround(-3e38)]);
      });
    }

    it(`${kernel}: shouldStop is first polled after one evaluation`, async () => {
      let polls = 0;
      const { res, z } = await tracked(kernel, elementwise((x) => 0.5 * x + 1, 1), 1, 1, { method: 'fixed-point', tol: 1e-9, maxIter: 100, shouldStop: () => { polls++; return true; } });
      expect(res.calls).toBe(1);
      expect(res.stopped).toBe(true);
      expect(polls).toBe(1);
      expect(res.iterations[0]).toBe(1);
      expect(z[0]).toBe(0);
      const free = await tracked(kernel, elementwise((x) => 0.5 * x + 1, 1), 1, 1, { method: 'fixed-point', tol: 1e-3, stopMode: 'abs', maxIter: 100, shouldStop: () => false });
      expect(free.res.stopped).toBe(false);
      expect(free.res.converged[0]).toBe(1);
    });

    it(`${kernel}: a trace only on request, one residual per evaluation`, async () => {
      const plain = await tracked(kernel, elementwise((x) => 0.5 * x + 1, 1), 2, 1, { method: 'fixed-point', tol: 1e-3, stopMode: 'abs' });
      expect(plain.res.trace).toBeUndefined();
      // Residuals 2·2⁻ᵏ (z = 2 − 2^(1−k)); tolerances per row stop them at different counts.
      const traced = await tracked(kernel, elementwise((x) => 0.5 * x + 1, 1), 2, 1, { method: 'fixed-point', stopMode: 'abs', sampleTol: [0.3, 0.1], maxIter: 20, trace: true });
      expect(Array.from(traced.res.trace![0])).toEqual([1, 0.5, 0.25]);
      expect(Array.from(traced.res.trace![1])).toEqual([1, 0.5, 0.25, 0.125, 0.0625]);
    });

    for (const method of METHODS) {
      it(`${method}/${kernel}: a row's iterates do not depend on the other rows of the batch`, async () => {
        const n = 5;
        const W = randomMatrix(n, 0.8, 21), b = randomVector(n, 22, 2);
        const scales = [0.3, 1.1, 0.7];
        const opts: Partial<SolverOptions> = { method, tol: 1e-5, stopMode: 'rel', maxIter: 12, history: 3, andersonBeta: 0.8, damping: 0.9 };
        const together = await tracked(kernel, batchedMap(W, b, n, Math.tanh, scales), 3, n, opts);
        for (let s = 0; s < 3; s++) {
          const alone = await tracked(kernel, batchedMap(W, b, n, Math.tanh, [scales[s]]), 1, n, opts);
          expect(together.seen[s]).toEqual(alone.seen[0]);
          expect(Array.from(together.z.subarray(s * n, (s + 1) * n))).toEqual(Array.from(alone.z));
          expect(together.res.iterations[s]).toBe(alone.res.iterations[0]);
          expect(together.res.residual[s]).toBe(alone.res.residual[0]);
        }
        expect(new Set(Array.from(together.res.iterations)).size).toBeGreaterThan(1); // rows stopped at different times
      });
    }
  }
});

describe('the wasm kernel', () => {
  for (const method of METHODS) {
    it(`${method}: a wasm workspace runs its residuals and steps in the wasm kernels`, async () => {
      const n = 6;
      const ws = new SolverWorkspace(method, 2, n, 3, 'wasm');
      const calls: Record<string, number> = {};
      const k = ws.wasm!.k;
      // Count the calls into the module (the export object itself is frozen: wrap it).
      (ws.wasm as { k: unknown }).k = Object.fromEntries(Object.entries(k).map(([name, fn]) => [name, (...a: number[]) => { calls[name] = (calls[name] ?? 0) + 1; return (fn as (...a: number[]) => unknown)(...a); }]));
      const W = randomMatrix(n, 0.6, 41), b = randomVector(n, 42);
      const res = await solve(batchedMap(W, b, n, Math.tanh, [1, 0.5]), 2, n, new Float32Array(2 * n), { method, history: 3, tol: 1e-6, stopMode: 'abs', maxIter: 50 }, ws);
      const evaluations = res.iterations[0] + res.iterations[1];
      expect(calls.residual).toBe(evaluations);
      const stepKernel = { broyden: 'broydenStart', anderson: 'andersonMix', 'fixed-point': 'fixedPoint' }[method];
      expect(calls[stepKernel]).toBeGreaterThanOrEqual(2);
      if (method === 'broyden') expect(calls.broydenCombine).toBeGreaterThan(2);
    });
  }
});

describe('SolveSession slots', () => {
  for (const kernel of KERNELS) {
    it(`${kernel}: admit, ended, evict, freeSlot and capacity`, () => {
      const ws = new SolverWorkspace('fixed-point', 3, 1, 8, kernel);
      ws.active.fill(1); // left over from an earlier user of the workspace
      const s = new SolveSession(ws, resolveSolverOptions({ method: 'fixed-point' }));
      expect(s.capacity).toBe(3);
      expect(s.activeCount).toBe(0);
      expect(s.trace).toEqual([null, null, null]); // no trace asked for: nothing allocated
      expect(s.freeSlot()).toBe(0);
      const f = elementwise((x) => 0.5 * x + 1, 1); // residual at z: 1 − z/2
      s.admit(1, { tol: 0.6, maxIter: 10, stopMode: 'abs' }); // from 0: residuals 1, 0.5 → ends at the 2nd
      expect(s.freeSlot()).toBe(0);
      s.admit(0, { tol: 1e-9, maxIter: 10, stopMode: 'abs' }, Float32Array.of(1.5)); // residual 0.25
      s.admit(2, { tol: 1e-9, maxIter: 1, stopMode: 'abs' }, Float32Array.of(2.5, 99)); // capped at once; only n values read
      expect(s.freeSlot()).toBe(-1);
      expect(s.activeCount).toBe(3);
      expect(() => s.admit(1, { tol: 1, maxIter: 1, stopMode: 'abs' })).toThrow(/slot 1 is running/);

      f(ws.z, ws.fz, ws.active); s.advance();
      expect(Array.from(s.ended.subarray(0, s.endedCount))).toEqual([2]);
      expect(s.end[2]).toBe(RowEnd.Capped);
      expect(s.converged[2]).toBe(0);
      expect(s.bestRow(2)[0]).toBe(2.5);
      expect(s.freeSlot()).toBe(2);
      f(ws.z, ws.fz, ws.active); s.advance();
      expect(Array.from(s.ended.subarray(0, s.endedCount))).toEqual([1]);
      expect(s.end[1]).toBe(RowEnd.Converged);
      expect(s.converged[1]).toBe(1);
      expect(s.bestRow(1)[0]).toBe(1);
      expect(s.freeSlot()).toBe(1);
      expect(s.activeCount).toBe(1);
      f(ws.z, ws.fz, ws.active); s.advance();
      expect(s.endedCount).toBe(0);

      s.evict(0);
      expect(s.end[0]).toBe(RowEnd.Evicted);
      expect(s.activeCount).toBe(0);
      expect(s.bestRow(0)[0]).toBe(1.875); // 1.5 → 1.75 → 1.875, each better than the last
      s.evict(1); // already ended: stays converged
      expect(s.end[1]).toBe(RowEnd.Converged);
      expect(s.converged[1]).toBe(1);

      // A slot admitted again starts over: no best, no flags, zeros when no z₀ is given.
      s.admit(1, { tol: 1e-9, maxIter: 2, stopMode: 'abs' });
      expect(s.end[1]).toBe(RowEnd.Running);
      expect(s.converged[1]).toBe(0);
      expect(s.iterations[1]).toBe(0);
      expect(s.residual[1]).toBe(Infinity);
      expect(ws.z[1]).toBe(0);
      expect(s.bestRow(1)[0]).toBe(0);
      expect(s.trace).toEqual([null, null, null]);
    });

    it(`${kernel}: the workspace must match the options' method and history`, () => {
      expect(() => new SolveSession(new SolverWorkspace('broyden', 1, 2, 8, kernel), resolveSolverOptions({ method: 'anderson', history: 8 }))).toThrow(/workspace is for broyden\/m=8/);
      expect(() => new SolveSession(new SolverWorkspace('broyden', 1, 2, 8, kernel), resolveSolverOptions({ method: 'broyden', history: 4 }))).toThrow(RangeError);
      expect(() => new SolveSession(new SolverWorkspace('broyden', 1, 2, 4, kernel), resolveSolverOptions({ method: 'broyden', history: 4 }))).not.toThrow();
    });

    for (const method of METHODS) {
      it(`${method}/${kernel}: a reused slot behaves exactly like a fresh session`, () => {
        const n = 4;
        const W = randomMatrix(n, 0.7, 31), b = randomVector(n, 32, 2);
        const opts = resolveSolverOptions({ method, history: 2, trace: true, damping: 0.8, andersonBeta: 0.9 });
        const run = (s: SolveSession, ws: SolverWorkspace, slot: number, c: number, row: { tol: number; maxIter: number }, z0?: Float32Array) => {
          const f = batchedMap(W, b, n, Math.tanh, [c]);
          const seen: number[][] = [];
          s.admit(slot, { ...row, stopMode: 'abs' }, z0);
          while (ws.active[slot]) {
            seen.push(Array.from(ws.z.subarray(slot * n, (slot + 1) * n)));
            // evaluate only `slot` (a batch of one, then copied into place)
            const one = new Float32Array(n);
            f(ws.z.subarray(slot * n, (slot + 1) * n), one, Uint8Array.of(1));
            ws.fz.set(one, slot * n);
            s.advance();
          }
          return { seen, best: Array.from(s.bestRow(slot)), residual: s.residual[slot], it: s.iterations[slot], end: s.end[slot], trace: Array.from(s.trace[slot]!.subarray(0, s.iterations[slot])) };
        };
        const ws = new SolverWorkspace(method, 2, n, 2, kernel);
        const s = new SolveSession(ws, opts);
        // First occupant: converges tightly after a long history (and a start iterate far away).
        const first = run(s, ws, 1, 1.2, { tol: 1e-6, maxIter: 60 }, Float32Array.of(3, -3, 3, -3));
        expect(first.end).toBe(RowEnd.Converged);
        // Second occupant: a different sample capped after 3 evaluations, from zeros.
        const second = run(s, ws, 1, 0.4, { tol: 1e-9, maxIter: 3 });
        const freshWs = new SolverWorkspace(method, 1, n, 2, kernel);
        const fresh = run(new SolveSession(freshWs, opts), freshWs, 0, 0.4, { tol: 1e-9, maxIter: 3 });
        expect(second).toEqual(fresh);
        expect(second.end).toBe(RowEnd.Capped);
        expect(s.converged[1]).toBe(0);
      });
    }
  }
});
