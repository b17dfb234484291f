// Every iterate of the Broyden and Anderson steps against the float64 re-implementations in
// reference.ts, on both kernels: the TypeScript reference kernel ('js') is what the wasm
// kernel is held to, so it is checked on its own here, step by step.
import { describe, expect, it } from 'vitest';
import { solve, SolverWorkspace, type FixedPointFn, type SolverKernel, type SolverOptions } from '../../src/solver/index.js';
import { batchedMap, randomMatrix, randomVector } from './maps.js';
import { andersonReference, broydenReference, worstStepError } from './reference.js';
import { ARMIJO_C, broydenNext, broydenStart, MIN_ALPHA } from '../../src/solver/broyden.js';
import { andersonNext, solveBordered } from '../../src/solver/anderson.js';

const KERNELS: SolverKernel[] = ['js', 'wasm'];

/** Runs a solve and returns, per row, every z evaluated and the f(z) that came back (float32 values, in float64). */
async function history(kernel: SolverKernel, f: FixedPointFn, batch: number, n: number, opts: Partial<SolverOptions> & { history: number }) {
  const zs: Float64Array[][] = Array.from({ length: batch }, () => []);
  const fs: Float64Array[][] = Array.from({ length: batch }, () => []);
  const rec: FixedPointFn = async (z, out, active) => {
    await f(z, out, active);
    for (let s = 0; s < batch; s++) {
      if (!active[s]) continue;
      zs[s].push(Float64Array.from(z.subarray(s * n, (s + 1) * n)));
      fs[s].push(Float64Array.from(out.subarray(s * n, (s + 1) * n)));
    }
  };
  const ws = new SolverWorkspace(opts.method ?? 'broyden', batch, n, opts.history, kernel);
  const res = await solve(rec, batch, n, new Float32Array(batch * n), { restartFactor: Infinity, ...opts }, ws);
  return { zs, fs, res };
}

describe('Broyden, every step against a float64 limited-memory Broyden', () => {
  for (const kernel of KERNELS) {
    for (const [n, m, seed] of [[6, 3, 1], [5, 1, 2], [7, 2, 3], [4, 8, 4]] as const) {
      it(`${kernel}: n = ${n}, m = ${m}, batch of 3 (the ring wraps when m < steps)`, async () => {
        // Gain 1.5: slow enough that a dozen steps are all large (compared), still convergent.
        const W = randomMatrix(n, 1.5, seed), b = randomVector(n, seed + 100, 1.5);
        const scales = [1, 0.6, 1.3];
        const { zs, fs, res } = await history(kernel, batchedMap(W, b, n, Math.tanh, scales), 3, n, { method: 'broyden', history: m, tol: 1e-30, stopMode: 'abs', maxIter: 12 });
        let total = 0;
        for (let s = 0; s < 3; s++) {
          expect(res.iterations[s]).toBeGreaterThanOrEqual(9);
          const ref = broydenReference(zs[s], fs[s], m);
          const { worst, compared } = worstStepError(zs[s], ref.next);
          expect(compared).toBeGreaterThanOrEqual(3);
          expect(worst).toBeLessThan(2e-3);
          total += compared;
        }
        expect(total).toBeGreaterThanOrEqual(15);
      });
    }

    it(`${kernel}: with Armijo line search, backtracking as the reference does`, async () => {
      const n = 9;
      let backtracks = 0, compared = 0;
      for (let seed = 1; seed <= 6; seed++) {
        // Hard maps: full steps often fail the Armijo test.
        const W = randomMatrix(n, 1.9 * Math.sqrt(n / 3), seed), b = randomVector(n, seed + 9);
        const { zs, fs } = await history(kernel, batchedMap(W, b, n, Math.tanh, [1, 0.7]), 2, n, { method: 'broyden', history: 4, lineSearch: true, tol: 1e-30, stopMode: 'abs', maxIter: 14 });
        for (let s = 0; s < 2; s++) {
          const ref = broydenReference(zs[s], fs[s], 4, true);
          const e = worstStepError(zs[s], ref.next);
          expect(e.worst).toBeLessThan(2e-3);
          backtracks += ref.backtracks;
          compared += e.compared;
        }
      }
      expect(backtracks).toBeGreaterThan(5);
      expect(compared).toBeGreaterThan(60);
    });
  }
});

describe('Anderson, every step against a float64 Anderson from (GGᵀ + λI)⁻¹1', () => {
  for (const kernel of KERNELS) {
    for (const [n, m, lambda, beta, seed] of [[6, 3, 1e-4, 1, 1], [6, 3, 0.05, 0.6, 2], [5, 1, 1e-4, 0.8, 3], [8, 5, 0.5, 1, 4], [4, 2, 1e-3, 0.3, 5]] as const) {
      it(`${kernel}: n = ${n}, m = ${m}, λ = ${lambda}, β = ${beta}, batch of 3`, async () => {
        const W = randomMatrix(n, 1.5, seed), b = randomVector(n, seed + 200, 1.5);
        const { zs, fs, res } = await history(kernel, batchedMap(W, b, n, Math.tanh, [1, 0.5, 1.2]), 3, n, { method: 'anderson', history: m, andersonLambda: lambda, andersonBeta: beta, tol: 1e-30, stopMode: 'abs', maxIter: 10 });
        let total = 0;
        for (let s = 0; s < 3; s++) {
          expect(res.iterations[s]).toBe(10);
          const { worst, compared } = worstStepError(zs[s], andersonReference(zs[s], fs[s], m, lambda, beta));
          expect(compared).toBeGreaterThanOrEqual(3);
          expect(worst).toBeLessThan(2e-3);
          total += compared;
        }
        expect(total).toBeGreaterThanOrEqual(15);
      });
    }
  }
});

// ---------------------------------------------------------------------------------------
// The TypeScript steps called directly on hand-set workspaces, with hand-computed results.
// They work on row 1 of 2 (row 0 filled with a marker value), so a step that reads or writes
// another row's data shows.

const MARK = 99;

/** A js workspace of batch 2 whose row-0 data is all MARK. */
function workspace(method: 'broyden' | 'anderson', n: number, m: number): SolverWorkspace {
  const ws = new SolverWorkspace(method, 2, n, m, 'js');
  for (const a of [ws.z, ws.fz, ws.g, ws.zPrev, ws.gPrev, ws.p]) a.fill(MARK, 0, n);
  ws.histA.fill(MARK, 0, m * n);
  ws.histB.fill(MARK, 0, m * n);
  ws.gram.fill(MARK, 0, m * m);
  return ws;
}
// (+ 0 turns −0 into 0: toEqual tells them apart, the arithmetic does not.)
const r1 = (a: Float32Array, n: number) => Array.from(a.subarray(n, 2 * n), (v) => v + 0);
/** Slot j of row 1 in a history buffer. */
const slot1 = (a: Float32Array, n: number, m: number, j: number) => Array.from(a.subarray((m + j) * n, (m + j + 1) * n), (v) => v + 0);
const untouchedRow0 = (ws: SolverWorkspace, n: number, m: number) => {
  for (const a of [ws.z, ws.zPrev, ws.gPrev, ws.p]) if (a.length) expect(Array.from(a.subarray(0, n))).toEqual(new Array(n).fill(MARK));
  expect(Array.from(ws.histA.subarray(0, m * n))).toEqual(new Array(m * n).fill(MARK));
  expect(Array.from(ws.histB.subarray(0, m * n))).toEqual(new Array(m * n).fill(MARK));
};

describe('broydenStart', () => {
  it('takes z + g (J⁻¹ = −I) and remembers the point, g and the direction', () => {
    const ws = workspace('broyden', 2, 2);
    ws.z.set([1, 2], 2);
    ws.g.set([3, -1], 2);
    ws.gNorm[1] = Math.sqrt(10);
    ws.alpha[1] = 0.25;
    broydenStart(ws, 1);
    expect(r1(ws.z, 2)).toEqual([4, 1]);
    expect(r1(ws.zPrev, 2)).toEqual([1, 2]);
    expect(r1(ws.gPrev, 2)).toEqual([3, -1]);
    expect(r1(ws.p, 2)).toEqual([3, -1]);
    expect(ws.resPrev[1]).toBe(Math.sqrt(10));
    expect(ws.alpha[1]).toBe(1);
    expect(ws.resPrev[0]).toBe(0);
    untouchedRow0(ws, 2, 2);
  });

  it('on row 0 leaves row 1 alone', () => {
    const ws = new SolverWorkspace('broyden', 2, 2, 2, 'js');
    for (const a of [ws.z, ws.g, ws.zPrev, ws.gPrev, ws.p]) a.fill(MARK, 2, 4);
    ws.z.set([1, 2], 0);
    ws.g.set([3, -1], 0);
    broydenStart(ws, 0);
    expect(Array.from(ws.z)).toEqual([4, 1, MARK, MARK]);
    for (const a of [ws.zPrev, ws.gPrev, ws.p]) expect(Array.from(a.subarray(2))).toEqual([MARK, MARK]);
  });
});

describe('broydenNext', () => {
  // Row 1 after broydenStart from z₀ = 0 with g₀ = (1, 0): z₁ = (1, 0), direction (1, 0).
  function afterStart(m = 2) {
    const ws = workspace('broyden', 2, m);
    ws.zPrev.set([0, 0], 2);
    ws.gPrev.set([1, 0], 2);
    ws.p.set([1, 0], 2);
    ws.z.set([1, 0], 2);
    ws.resPrev[1] = 1;
    ws.alpha[1] = 1;
    return ws;
  }

  it('first update, by hand: u = (Δz − J⁻¹Δg)/(vᵀΔg), v = J⁻ᵀΔz, step −J⁻¹g', () => {
    // g₁ = (0.5, 0.25): Δz = (1, 0), Δg = (−0.5, 0.25). With J⁻¹ = −I: v = −Δz = (−1, 0),
    // vᵀΔg = 0.5, u = ((1, 0) + (−0.5, 0.25)) / 0.5 = (1, 0.5). New J⁻¹ = −I + u vᵀ =
    // [[−2, 0], [−0.5, −1]], step −J⁻¹g = (1, 0.5), z₂ = (2, 0.5).
    const ws = afterStart();
    ws.g.set([0.5, 0.25], 2);
    ws.gNorm[1] = Math.hypot(0.5, 0.25);
    broydenNext(ws, 1, false);
    expect(r1(ws.z, 2)).toEqual([2, 0.5]);
    expect(slot1(ws.histA, 2, 2, 0)).toEqual([1, 0.5]);
    expect(slot1(ws.histB, 2, 2, 0)).toEqual([-1, 0]);
    expect([ws.count[1], ws.head[1]]).toEqual([1, 1]);
    expect(r1(ws.zPrev, 2)).toEqual([1, 0]);
    expect(r1(ws.gPrev, 2)).toEqual([0.5, 0.25]);
    expect(r1(ws.p, 2)).toEqual([1, 0.5]);
    expect(ws.resPrev[1]).toBe(Math.hypot(0.5, 0.25));
    expect(ws.alpha[1]).toBe(1);
    untouchedRow0(ws, 2, 2);
  });

  it('after a halved step (α = 1/2) the update uses the step actually taken', () => {
    // z = z_prev + ½·(1, 0) = (0.5, 0), g = (0.5, 0.25): Δz = (0.5, 0), Δg = (−0.5, 0.25),
    // v = (−0.5, 0), vᵀΔg = 0.25, u = ((0.5, 0) − (0.5, −0.25)) / 0.25 = (0, 1);
    // J⁻¹ = [[−1, 0], [−0.5, −1]], step = (0.5, 0.5), z = (1, 0.5).
    const ws = afterStart();
    ws.z.set([0.5, 0], 2);
    ws.alpha[1] = 0.5;
    ws.g.set([0.5, 0.25], 2);
    broydenNext(ws, 1, false);
    expect(slot1(ws.histA, 2, 2, 0)).toEqual([0, 1]);
    expect(slot1(ws.histB, 2, 2, 0)).toEqual([-0.5, 0]);
    expect(r1(ws.z, 2)).toEqual([1, 0.5]);
    expect(ws.alpha[1]).toBe(1);
  });

  it('a second update, through a full ring (m = 1) and not (m = 2), matches the float64 reference', () => {
    // Points 0 → (1, 0) → (2, 0.5) as above, then g₂ = (0.25, 0): the m = 1 ring drops the first
    // update for the second, the m = 2 one keeps both.
    const zs = [[0, 0], [1, 0], [2, 0.5]].map((v) => Float64Array.from(v));
    const gs = [[1, 0], [0.5, 0.25], [0.25, 0]];
    const fs = zs.map((z, k) => z.map((v, i) => v + gs[k][i]));
    for (const m of [1, 2]) {
      const ws = workspace('broyden', 2, m);
      ws.z.set(zs[0], 2);
      ws.g.set(gs[0], 2);
      broydenStart(ws, 1);
      for (const k of [1, 2]) {
        expect(r1(ws.z, 2)).toEqual(Array.from(zs[k]));
        ws.g.set(gs[k], 2);
        broydenNext(ws, 1, false);
      }
      const expected = broydenReference(zs, fs, m).next[2];
      const got = r1(ws.z, 2);
      for (let i = 0; i < 2; i++) expect(got[i]).toBeCloseTo(expected[i], 6);
      expect([ws.count[1], ws.head[1]]).toEqual(m === 1 ? [1, 0] : [2, 0]);
      untouchedRow0(ws, 2, m);
    }
    // The two differ (the full ring really dropped something).
    expect(broydenReference(zs, fs, 1).next[2][0]).not.toBeCloseTo(broydenReference(zs, fs, 2).next[2][0], 3);
  });

  for (const [m, count, head] of [[1, 1, 0], [2, 1, 1]] as const) {
    it(`a skipped update (vᵀΔg = 0) keeps J⁻¹ whole (m = ${m}, ${count === m ? 'full ring' : 'ring not full'})`, () => {
      // One stored pair u = (1, 0), v = (0, 1): J⁻¹ = [[−1, 1], [0, −1]]. z = z_prev, so Δz = 0,
      // v = J⁻ᵀΔz = 0 and the update is skipped. Step −J⁻¹g with g = (2, 3): (−1, 3).
      const ws = workspace('broyden', 2, m);
      ws.histA.set([1, 0], m * 2);
      ws.histB.set([0, 1], m * 2);
      ws.count[1] = count;
      ws.head[1] = head;
      ws.zPrev.set([5, 5], 2);
      ws.z.set([5, 5], 2);
      ws.gPrev.set([1, 1], 2);
      ws.g.set([2, 3], 2);
      ws.alpha[1] = 1;
      broydenNext(ws, 1, false);
      expect(r1(ws.z, 2)).toEqual([4, 8]);
      expect(r1(ws.p, 2)).toEqual([-1, 3]);
      expect([ws.count[1], ws.head[1]]).toEqual([count, head]);
      expect(slot1(ws.histA, 2, m, 0)).toEqual([1, 0]);
      expect(slot1(ws.histB, 2, m, 0)).toEqual([0, 1]);
      expect(r1(ws.zPrev, 2)).toEqual([5, 5]);
      expect(r1(ws.gPrev, 2)).toEqual([2, 3]);
    });
  }

  it('a skipped update with a ring not yet full ignores whatever the next slot held before', () => {
    // As above with m = 2, count 1, head 1, but slot 1 holds a pair from before a restart and
    // the coefficient scratch a stale value: the step is still −J⁻¹g = (−1, 3).
    const ws = workspace('broyden', 2, 2);
    ws.histA.set([1, 0, 5, 5], 4);
    ws.histB.set([0, 1, 6, 6], 4);
    ws.coeff.fill(3);
    ws.count[1] = 1;
    ws.head[1] = 1;
    ws.zPrev.set([5, 5], 2);
    ws.z.set([5, 5], 2);
    ws.g.set([2, 3], 2);
    ws.alpha[1] = 1;
    broydenNext(ws, 1, false);
    expect(r1(ws.z, 2)).toEqual([4, 8]);
  });

  describe('Armijo line search', () => {
    // Accepted point: 0, direction (1, 2), ‖g‖ there 1.
    function at(alpha: number, gNorm: number) {
      const ws = workspace('broyden', 2, 2);
      ws.zPrev.set([0, 0], 2);
      ws.gPrev.set([1, 0], 2);
      ws.p.set([1, 2], 2);
      ws.z.set([alpha, 2 * alpha], 2);
      ws.g.set([0.5, 0.25], 2);
      ws.alpha[1] = alpha;
      ws.resPrev[1] = 1;
      ws.gNorm[1] = gNorm;
      return ws;
    }
    const backtracked = (ws: SolverWorkspace, to: number) => {
      expect(ws.alpha[1]).toBe(to);
      expect(r1(ws.z, 2)).toEqual([to, 2 * to]);
      // A rejected point changes nothing else.
      expect(r1(ws.zPrev, 2)).toEqual([0, 0]);
      expect(r1(ws.gPrev, 2)).toEqual([1, 0]);
      expect(r1(ws.p, 2)).toEqual([1, 2]);
      expect([ws.count[1], ws.head[1], ws.resPrev[1]]).toEqual([0, 0, 1]);
    };
    const accepted = (ws: SolverWorkspace, alpha: number) => {
      expect(ws.alpha[1]).toBe(1);
      expect(r1(ws.zPrev, 2)).toEqual([alpha, 2 * alpha]);
      expect(r1(ws.gPrev, 2)).toEqual([0.5, 0.25]);
    };

    it('halves the step when ‖g‖ is not below (1 − 1e-4·α)·‖g_prev‖', () => {
      const ws = at(1, 1);
      broydenNext(ws, 1, true);
      backtracked(ws, 0.5);
      const again = at(0.25, 2);
      broydenNext(again, 1, true);
      backtracked(again, 0.125);
    });

    it('accepts at the bound itself and below it (α = 1/2: bound 0.99995, not 0.9998)', () => {
      expect(ARMIJO_C).toBe(1e-4);
      const equal = at(0.5, (1 - ARMIJO_C * 0.5) * 1);
      broydenNext(equal, 1, true);
      accepted(equal, 0.5);
      const below = at(0.5, 0.9999);
      broydenNext(below, 1, true);
      accepted(below, 0.5);
      const above = at(0.5, 1.00001);
      broydenNext(above, 1, true);
      backtracked(above, 0.25);
    });

    it('stops halving at α = 1/8 (three halvings) and accepts whatever comes', () => {
      expect(MIN_ALPHA).toBe(0.125);
      const ws = at(0.125, 5);
      broydenNext(ws, 1, true);
      accepted(ws, 0.125);
    });

    it('without line search every point is accepted', () => {
      const ws = at(1, 5);
      broydenNext(ws, 1, false);
      accepted(ws, 1);
    });
  });
});

describe('solveBordered', () => {
  // Anderson workspace, batch 2, m = 4: row 1's Gram block starts at 16, stride 4.
  function gram(entries: number[][], fill = 7) {
    const ws = new SolverWorkspace('anderson', 2, 1, 4, 'js');
    ws.gram.fill(fill);
    entries.forEach((row, r) => row.forEach((v, c) => { ws.gram[16 + r * 4 + c] = v; }));
    ws.coeff.fill(-5);
    return ws;
  }
  const weights = (ws: SolverWorkspace, k: number) => Array.from(ws.coeff.subarray(0, k));
  const close = (got: number[], want: number[]) => { expect(got.length).toBe(want.length); got.forEach((g, i) => expect(g).toBeCloseTo(want[i], 12)); };

  it('one pair: weight 1', () => {
    const ws = gram([[4]]);
    expect(solveBordered(ws, 16, 1, 0)).toBe(true);
    close(weights(ws, 1), [1]);
  });

  it('weights ∝ (H + λI)⁻¹1, summing to 1', () => {
    let ws = gram([[1, 0], [0, 3]]);
    expect(solveBordered(ws, 16, 2, 0)).toBe(true);
    close(weights(ws, 2), [0.75, 0.25]);
    ws = gram([[1, 0], [0, 3]]);
    expect(solveBordered(ws, 16, 2, 1)).toBe(true); // diag(2, 4): ∝ (1/2, 1/4)
    close(weights(ws, 2), [2 / 3, 1 / 3]);
    ws = gram([[2, 1, 0], [1, 2, 1], [0, 1, 2]]); // H⁻¹1 = (½, 0, ½)
    expect(solveBordered(ws, 16, 3, 0)).toBe(true);
    close(weights(ws, 3), [0.5, 0, 0.5]);
    ws = gram([[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 4, 0], [0, 0, 0, 8]]);
    expect(solveBordered(ws, 16, 4, 0)).toBe(true);
    close(weights(ws, 4), [8 / 15, 4 / 15, 2 / 15, 1 / 15]);
    ws = gram([[3, 1, 1], [1, 4, 2], [1, 2, 5]], -1);
    expect(solveBordered(ws, 16, 3, 0.5)).toBe(true);
    const y = solveSmall([[3.5, 1, 1], [1, 4.5, 2], [1, 2, 5.5]], [1, 1, 1]);
    close(weights(ws, 3), y.map((v) => v / (y[0] + y[1] + y[2])));
  });

  it('reads only its own k × k block of the Gram matrices', () => {
    for (const fill of [7, -30, 1e20, -1e20]) {
      const ws = gram([[1, 0], [0, 3]], fill);
      expect(solveBordered(ws, 16, 2, 0)).toBe(true);
      close(weights(ws, 2), [0.75, 0.25]);
      expect(ws.coeff[2]).toBe(-5); // and writes k weights, no more
    }
  });

  // Grams of residual vectors G (rows): with more residuals than dimensions the weights that
  // sum to 1 and cancel the residuals, Σ αⱼ Gⱼ = 0, are the minimiser (unique here).
  const gramOf = (G: number[][]) => G.map((a) => G.map((b) => a.reduce((s, v, i) => s + v * b[i], 0)));
  for (const G of [
    [[-1, 0], [-1, 1], [2, 0]], // needs a row swap at the second column
    [[0, -1, -1], [1, 0, -1], [3, 2, 3], [3, 0.5, 2]], // four in 3-D: pivots on later columns too
  ]) {
    it(`${G.length} residuals in ${G[0].length}-D: weights sum to 1 and cancel the residuals`, () => {
      const ws = gram(gramOf(G), 1e20);
      expect(solveBordered(ws, 16, G.length, 0)).toBe(true);
      const a = weights(ws, G.length);
      expect(a.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 12);
      for (let i = 0; i < G[0].length; i++) expect(G.reduce((s, g, j) => s + a[j] * g[i], 0)).toBeCloseTo(0, 12);
    });
  }

  it('H = [[1, 1], [1, 2]] (residuals (1, 0), (1, 1)): weights (1, 0), though the last row has no pivot after the first column', () => {
    // ‖(1 − a)(1, 0) + a(1, 1)‖² = 1 + a² is least at a = 0.
    const ws = gram([[1, 1], [1, 2]]);
    expect(solveBordered(ws, 16, 2, 0)).toBe(true);
    close(weights(ws, 2), [1, 0]);
  });

  it('a Gram of rank k − 2 (four residuals in 2-D, one of them zero) is singular', () => {
    const ws = gram(gramOf([[0.5, 0.5], [2, 1], [2, 3], [0, 0]]));
    expect(solveBordered(ws, 16, 4, 0)).toBe(false);
    expect(weights(ws, 4)).toEqual([-5, -5, -5, -5]);
  });

  it('a singular or non-finite system is refused and the weights are left alone', () => {
    for (const H of [[[1, 1], [1, 1]], [[NaN, 0], [0, 1]], [[1, 0], [0, Infinity]], [[0, 0], [0, 0]]]) {
      const ws = gram(H);
      expect(solveBordered(ws, 16, 2, 0)).toBe(false);
      expect(weights(ws, 2)).toEqual([-5, -5]);
    }
    const ws = gram([[1, 1], [1, 1]]);
    expect(solveBordered(ws, 16, 2, 0.5)).toBe(true); // λ makes it regular
    close(weights(ws, 2), [0.5, 0.5]);
  });

  it('"singular" is relative to the largest entry: a pivot ≤ 1e-14 × it is refused', () => {
    // H = s·[[1, 1], [1, 1]] + δ·e₂e₂ᵀ: the last pivot is δ; refused when δ ≤ 1e-14·s.
    const s = 1e6;
    expect(solveBordered(gram([[s, s], [s, s + 1e-9]]), 16, 2, 0)).toBe(false);
    const ws = gram([[s, s], [s, s + 1e-7]]);
    expect(solveBordered(ws, 16, 2, 0)).toBe(true);
    const w = weights(ws, 2);
    expect(w[0] + w[1]).toBeCloseTo(1, 9);
    expect(w[0]).toBeCloseTo(1, 1); // (H⁻¹1 ∝ (δ, 0))
    // The largest entry anywhere sets the scale, not the last one: with a third, orthogonal
    // residual of norm 1 the near-duplicate pair is still refused.
    expect(solveBordered(gram([[s, s, 0], [s, s + 1e-9, 0], [0, 0, 1]]), 16, 3, 0)).toBe(false);
  });
});

/** 3×3 solve by Cramer's rule (independent of both eliminations). */
function solveSmall(A: number[][], y: number[]): number[] {
  const det = (M: number[][]) => M[0][0] * (M[1][1] * M[2][2] - M[1][2] * M[2][1]) - M[0][1] * (M[1][0] * M[2][2] - M[1][2] * M[2][0]) + M[0][2] * (M[1][0] * M[2][1] - M[1][1] * M[2][0]);
  const d = det(A);
  return [0, 1, 2].map((c) => det(A.map((row, r) => row.map((v, j) => (j === c ? y[r] : v)))) / d);
}

describe('andersonNext', () => {
  it('stores each pair in the ring, keeps the Gram matrix, mixes with β (by hand)', () => {
    // m = 2, row 1. Pairs: (0, f = (1, 0)), ((1, 0), f = (1, 1)), ((1, 0.5), f = (2, 0.5)):
    // residuals (1, 0), (0, 1), (1, 0) — orthogonal, so with λ = 0 the weights are ½, ½.
    for (const beta of [1, 0.5]) {
      const ws = workspace('anderson', 2, 2);
      const step = (z: number[], f: number[]) => {
        ws.z.set(z, 2);
        ws.fz.set(f, 2);
        ws.g.set([f[0] - z[0], f[1] - z[1]], 2);
        andersonNext(ws, 1, 0, beta);
        return r1(ws.z, 2);
      };
      // One pair: weight 1, z = β f + (1 − β) z.
      expect(step([0, 0], [1, 0])).toEqual([beta, 0]);
      expect([ws.count[1], ws.head[1]]).toEqual([1, 1]);
      expect(Array.from(ws.gram.subarray(4, 8))).toEqual([1, 0, 0, 0]);
      // Two: ½(β(1, 0) + (1−β)·0) + ½(β(1, 1) + (1−β)(1, 0)).
      expect(step([1, 0], [1, 1])).toEqual([0.5 * beta + 0.5, 0.5 * beta]);
      expect([ws.count[1], ws.head[1]]).toEqual([2, 0]);
      expect(Array.from(ws.gram.subarray(4, 8))).toEqual([1, 0, 0, 1]);
      expect(slot1(ws.histA, 2, 2, 1)).toEqual([1, 0]);
      expect(slot1(ws.histB, 2, 2, 1)).toEqual([1, 1]);
      // Third: overwrites slot 0; mixes it with slot 1: ½(β(2, .5) + (1−β)(1, .5)) + ½(β(1, 1) + (1−β)(1, 0)).
      expect(step([1, 0.5], [2, 0.5])).toEqual([0.5 * (2 * beta + (1 - beta)) + 0.5, 0.5 * (0.5 * beta + 0.5 * (1 - beta)) + 0.5 * beta]);
      expect([ws.count[1], ws.head[1]]).toEqual([2, 1]);
      expect(slot1(ws.histA, 2, 2, 0)).toEqual([1, 0.5]);
      expect(slot1(ws.histB, 2, 2, 0)).toEqual([2, 0.5]);
      expect(Array.from(ws.gram.subarray(4, 8))).toEqual([1, 0, 0, 1]);
      untouchedRow0(ws, 2, 2);
      expect(Array.from(ws.gram.subarray(0, 4))).toEqual([MARK, MARK, MARK, MARK]);
    }
  });

  it('falls back to the newest pair alone when the system is singular', () => {
    // A second pair equal to the first: H = [[13, 13], [13, 13]] with λ = 0 is singular.
    for (const beta of [1, 0.5]) {
      const ws = workspace('anderson', 2, 3);
      ws.histA.set([1, 2], 3 * 2);
      ws.histB.set([3, 5], 3 * 2);
      ws.gram[9] = 13;
      ws.count[1] = 1;
      ws.head[1] = 1;
      ws.z.set([1, 2], 2);
      ws.fz.set([3, 5], 2);
      ws.g.set([2, 3], 2);
      ws.coeff.fill(7); // stale weights must not leak into the mix
      andersonNext(ws, 1, 0, beta);
      expect(r1(ws.z, 2)).toEqual([3 * beta + (1 - beta), 5 * beta + 2 * (1 - beta)]);
      expect(Array.from(ws.coeff.subarray(0, 2))).toEqual([0, 1]);
      expect([ws.count[1], ws.head[1]]).toEqual([2, 2]);
    }
  });
});
