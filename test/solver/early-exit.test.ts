// Early exit on a stable prediction (issue 23): a row stops at the first iteration where its
// label has held for `patience` iterations and its residual is under `predictionTol`, not before.
// Fixed-point iteration on f(z) = a·z + c from z₀ = 0 has residual ‖c‖·aᵏ at evaluation k + 1,
// so the iteration where the residual bound first holds is known in closed form.
import { describe, expect, it } from 'vitest';
import { resolveSolverOptions, RowEnd, solve, SolveSession, SolverWorkspace, type FixedPointFn, type PredictFn, type SolverKernel } from '../../src/solver/index.js';

const KERNELS: SolverKernel[] = ['js', 'wasm'];
const A = 0.5;
const N = 4;

const affine: FixedPointFn = (z, out, active) => {
  for (let s = 0; s < active.length; s++) if (active[s]) for (let k = s * N; k < (s + 1) * N; k++) out[k] = A * z[k] + 1;
};

/** A label per row and evaluation, scripted: row r's label at its evaluation t is script[r][t] (last value repeats). */
function scripted(script: number[][], counts: number[]): PredictFn {
  return (_z, want, out) => {
    for (let r = 0; r < want.length; r++) {
      if (!want[r]) continue;
      const s = script[r];
      out[r] = s[Math.min(counts[r]++, s.length - 1)];
    }
  };
}

/** First evaluation (1-based) at which the abs residual 2·aᵏ⁻¹ is below `bound`: an independent count. */
function firstUnder(bound: number): number {
  let it = 1;
  while (2 * A ** (it - 1) >= bound) it++;
  return it;
}

/** The first evaluation at which the last `patience` label changes were none (patience + 1 equal labels). */
function firstStable(labels: number[], patience: number, from: number): number {
  for (let it = Math.max(from, patience + 1); ; it++) {
    const at = (t: number) => labels[Math.min(t - 1, labels.length - 1)];
    let ok = true;
    for (let t = it - patience; t < it; t++) if (at(t) !== at(it)) ok = false;
    if (ok) return it;
  }
}

describe('early exit on a stable prediction', () => {
  for (const kernel of KERNELS) {
    it(`${kernel}: each row stops at the first iteration where label stability and the residual bound both hold`, async () => {
      const script = [
        [0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2], // stable late, residual long under the bound
        [3], // stable from the start: the residual bound decides
        [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 7], // flips until evaluation 13
      ];
      const patience = 2, predictionTol = 0.2;
      const counts = [0, 0, 0];
      const z = new Float32Array(3 * N);
      const ws = new SolverWorkspace('fixed-point', 3, N, 8, kernel);
      const res = await solve(affine, 3, N, z, { method: 'fixed-point', tol: 1e-12, stopMode: 'abs', maxIter: 40, patience, predictionTol, predict: scripted(script, counts), trace: true }, ws);
      const bound = firstUnder(predictionTol);
      for (let r = 0; r < 3; r++) {
        expect(res.iterations[r], `row ${r}`).toBe(firstStable(script[r], patience, bound));
        expect(res.end[r]).toBe(RowEnd.Predicted);
        expect(res.converged[r]).toBe(0);
        expect(counts[r]).toBe(res.iterations[r]); // labelled once per evaluation, never after stopping
        // The returned iterate is the one judged stable: its residual, not a later one's.
        expect(res.residual[r]).toBeCloseTo(2 * A ** (res.iterations[r] - 1), 6);
        expect(Array.from(res.traceLabels![r])).toEqual(Array.from({ length: res.iterations[r] }, (_, t) => script[r][Math.min(t, script[r].length - 1)]));
      }
      expect(bound).toBe(5);
      expect(res.iterations[0]).toBe(6); // labels 2, 2, 2 at evaluations 4–6
      expect(res.iterations[1]).toBe(5); // stable from the start; the residual bound first holds at 5
      expect(res.iterations[2]).toBe(15);
    });

    it(`${kernel}: patience 0 never stops on the label, and tol still wins when it comes first`, async () => {
      const counts = [0];
      const off = await solve(affine, 1, N, new Float32Array(N), { method: 'fixed-point', tol: 1e-6, stopMode: 'abs', maxIter: 60, predict: scripted([[1]], counts) }, new SolverWorkspace('fixed-point', 1, N, 8, kernel));
      expect(off.end[0]).toBe(RowEnd.Converged);
      expect(counts[0]).toBe(0); // no label wanted: no head run
      const tolFirst = await solve(affine, 1, N, new Float32Array(N), { method: 'fixed-point', tol: 0.5, stopMode: 'abs', maxIter: 60, patience: 3, predictionTol: 1, predict: scripted([[1]], [0]) }, new SolverWorkspace('fixed-point', 1, N, 8, kernel));
      expect(tolFirst.end[0]).toBe(RowEnd.Converged);
      expect(tolFirst.iterations[0]).toBe(firstUnder(0.5));
    });
  }

  for (const kernel of KERNELS) {
    it(`${kernel}: a stable label whose margin is under prediction_margin does not stop the row`, async () => {
      // Label 1 throughout; margin 0.5 until evaluation 9, then 0.95. Residual bound loose (1): margin decides.
      let evals = 0;
      const predict: PredictFn = (_z, want, labels, margins) => {
        if (!want[0]) return;
        evals++;
        labels[0] = 1;
        margins[0] = evals < 9 ? 0.5 : 0.95;
      };
      const res = await solve(affine, 1, N, new Float32Array(N), { method: 'fixed-point', tol: 1e-12, stopMode: 'abs', maxIter: 40, patience: 2, predictionTol: 10, predictionMargin: 0.9, predict }, new SolverWorkspace('fixed-point', 1, N, 8, kernel));
      expect(res.end[0]).toBe(RowEnd.Predicted);
      expect(res.iterations[0]).toBe(9);
      const loose = await solve(affine, 1, N, new Float32Array(N), { method: 'fixed-point', tol: 1e-12, stopMode: 'abs', maxIter: 40, patience: 2, predictionTol: 10, predictionMargin: 0.4, predict: (_z, w, l, m) => { l[0] = 1; m[0] = 0.5; } }, new SolverWorkspace('fixed-point', 1, N, 8, kernel));
      expect(loose.iterations[0]).toBe(3);
    });
  }

  it('a session row with patience and one without share a batch; each keeps its own rule', () => {
    const opts = resolveSolverOptions({ method: 'fixed-point', tol: 1e-12, stopMode: 'abs', maxIter: 30 });
    const ws = new SolverWorkspace('fixed-point', 2, N, 8, 'js');
    const s = new SolveSession(ws, opts);
    s.admit(0, { tol: 1e-12, maxIter: 30, stopMode: 'abs', patience: 1, predictionTol: 1 });
    s.admit(1, { tol: 1e-12, maxIter: 30, stopMode: 'abs' });
    let evals = 0;
    while (s.activeCount > 0 && evals < 40) {
      affine(ws.z, ws.fz, ws.active);
      const want = s.predictionMask();
      if (ws.active[1]) expect(want?.[1] ?? 0).toBe(0);
      if (want) s.prediction[0] = 4;
      s.advance();
      evals++;
    }
    expect(s.end[0]).toBe(RowEnd.Predicted);
    expect(s.iterations[0]).toBe(Math.max(2, firstUnder(1)));
    expect(s.end[1]).not.toBe(RowEnd.Predicted);
    expect(s.iterations[1]).toBeGreaterThan(s.iterations[0]);
  });

  it('patience without a predict function is refused', async () => {
    await expect(solve(affine, 1, N, new Float32Array(N), { patience: 2 })).rejects.toThrow(/predict/);
    expect(() => resolveSolverOptions({ patience: -1 })).toThrow(/patience/);
  });
});
