// summarizeSolve: the one reduction behind every response summary, log line and metric.
// Every expected value below is computed by hand from the rows written out in the test.
import { describe, expect, it } from 'vitest';
import { summarizeSolve, type SolveRows } from '../../src/solver/index.js';

function rows(iterations: number[], residual: number[], converged: number[], diverged: number[]): SolveRows {
  return {
    iterations: Int32Array.from(iterations),
    residual: Float64Array.from(residual),
    converged: Uint8Array.from(converged),
    diverged: Uint8Array.from(diverged),
  };
}

describe('summarizeSolve', () => {
  // Row 1 is the worst in iterations and residual; row 3 diverged; rows 0 and 2 converged.
  const s = rows([3, 7, 5, 9], [1e-4, 2e-3, 5e-4, 1e-3], [1, 0, 1, 0], [0, 0, 0, 1]);

  it('over every row: count, mean and max iterations, worst residual, converged and diverged counts', () => {
    expect(summarizeSolve(s)).toEqual({ rows: 4, meanIterations: (3 + 7 + 5 + 9) / 4, maxIterations: 9, maxResidual: 2e-3, converged: 2, diverged: 1 });
  });

  it('restricted to some rows, in any order, only those rows count', () => {
    expect(summarizeSolve(s, [2, 0])).toEqual({ rows: 2, meanIterations: 4, maxIterations: 5, maxResidual: 5e-4, converged: 2, diverged: 0 });
    expect(summarizeSolve(s, [3])).toEqual({ rows: 1, meanIterations: 9, maxIterations: 9, maxResidual: 1e-3, converged: 0, diverged: 1 });
    expect(summarizeSolve(s, [1, 3])).toEqual({ rows: 2, meanIterations: 8, maxIterations: 9, maxResidual: 2e-3, converged: 0, diverged: 1 });
  });

  it('takes any iterable of row indices (a Set, a generator)', () => {
    expect(summarizeSolve(s, new Set([0, 1]))).toEqual({ rows: 2, meanIterations: 5, maxIterations: 7, maxResidual: 2e-3, converged: 1, diverged: 0 });
    function* odd() { yield 1; yield 3; }
    expect(summarizeSolve(s, odd())).toEqual(summarizeSolve(s, [1, 3]));
  });

  it('the maximum is taken wherever it sits (first, middle or last row)', () => {
    const first = rows([8, 2, 1], [3, 1, 2], [0, 0, 0], [0, 0, 0]);
    expect(summarizeSolve(first)).toMatchObject({ maxIterations: 8, maxResidual: 3 });
    const last = rows([1, 2, 8], [1, 2, 3], [0, 0, 0], [0, 0, 0]);
    expect(summarizeSolve(last)).toMatchObject({ maxIterations: 8, maxResidual: 3 });
  });

  it('no rows: zero rows, mean 0 (not NaN), everything else 0', () => {
    const empty = { rows: 0, meanIterations: 0, maxIterations: 0, maxResidual: 0, converged: 0, diverged: 0 };
    expect(summarizeSolve(s, [])).toEqual(empty);
    expect(summarizeSolve(rows([], [], [], []))).toEqual(empty);
  });

  it('a NaN residual makes the worst residual Infinity, wherever it appears among the rows', () => {
    expect(summarizeSolve(rows([1, 1], [NaN, 0.5], [0, 0], [1, 0])).maxResidual).toBe(Infinity);
    expect(summarizeSolve(rows([1, 1], [0.5, NaN], [0, 0], [0, 1])).maxResidual).toBe(Infinity);
    expect(summarizeSolve(rows([1, 1, 1], [0.5, NaN, 0.25], [0, 0, 0], [0, 1, 0])).maxResidual).toBe(Infinity);
    expect(summarizeSolve(rows([1, 1], [Infinity, 0.5], [0, 0], [1, 0])).maxResidual).toBe(Infinity);
    // Restricted to the finite rows, the NaN row does not count.
    expect(summarizeSolve(rows([1, 1, 1], [0.5, NaN, 0.25], [0, 0, 0], [0, 1, 0]), [0, 2]).maxResidual).toBe(0.5);
  });

  it('accepts a plain array of residuals (a worker reply)', () => {
    const reply = { iterations: Int32Array.from([2, 4]), residual: [0.25, 0.125], converged: Uint8Array.from([1, 1]), diverged: Uint8Array.from([0, 0]) };
    expect(summarizeSolve(reply)).toEqual({ rows: 2, meanIterations: 3, maxIterations: 4, maxResidual: 0.25, converged: 2, diverged: 0 });
  });
});
