// resolveSolverOptions and solve()'s own argument checks: every bad value is rejected with a
// RangeError naming the option, every boundary value on the good side is accepted.
import { describe, expect, it } from 'vitest';
import { resolveSolverOptions, solve, SOLVER_DEFAULTS, SOLVER_METHODS, STOP_MODES, SolverWorkspace, type FixedPointFn, type ResolvedSolverOptions, type SolverOptions } from '../../src/solver/index.js';

/** Expects `overrides` to be rejected with a RangeError whose message names `option`. */
function rejects(overrides: Partial<SolverOptions>, option: string): void {
  let err: unknown;
  try {
    resolveSolverOptions(overrides);
  } catch (e) {
    err = e;
  }
  expect(err, `${JSON.stringify(overrides)} should be rejected`).toBeInstanceOf(RangeError);
  expect((err as Error).message).toContain(option);
}

describe('solver defaults (docs/solver.md)', () => {
  it('are the documented values', () => {
    expect(SOLVER_DEFAULTS).toEqual({
      method: 'broyden', tol: 1e-3, stopMode: 'rel', maxIter: 30, history: 8, lineSearch: false,
      andersonLambda: 1e-4, andersonBeta: 1, damping: 1, divergenceFactor: 1e4, restartFactor: 10, patience: 0, predictionTol: 0.1, predictionMargin: 0, trace: false,
    });
    expect(Object.isFrozen(SOLVER_DEFAULTS)).toBe(true);
  });

  it('list the three methods and two stop modes, frozen', () => {
    expect([...SOLVER_METHODS]).toEqual(['broyden', 'anderson', 'fixed-point']);
    expect([...STOP_MODES]).toEqual(['abs', 'rel']);
    expect(Object.isFrozen(SOLVER_METHODS)).toBe(true);
    expect(Object.isFrozen(STOP_MODES)).toBe(true);
  });
});

describe('resolveSolverOptions', () => {
  it('with no overrides gives a copy of the defaults, not the frozen object itself', () => {
    const o = resolveSolverOptions({});
    expect(o).toEqual(SOLVER_DEFAULTS);
    expect(o).not.toBe(SOLVER_DEFAULTS);
    expect(Object.isFrozen(o)).toBe(false);
  });

  it('overrides what is set and keeps the defaults for what is not, or is undefined', () => {
    const o = resolveSolverOptions({ method: 'anderson', tol: 1e-5, maxIter: undefined, history: undefined });
    expect(o.method).toBe('anderson');
    expect(o.tol).toBe(1e-5);
    expect(o.maxIter).toBe(30);
    expect(o.history).toBe(8);
    expect(o.stopMode).toBe('rel');
  });

  it('fills from the base it is given, and leaves the base alone', () => {
    const base: ResolvedSolverOptions = { ...SOLVER_DEFAULTS, method: 'fixed-point', damping: 0.5, maxIter: 7 };
    const o = resolveSolverOptions({ maxIter: 9 }, base);
    expect(o).toEqual({ ...base, maxIter: 9 });
    expect(base.maxIter).toBe(7);
  });

  it('keeps per-call options (sampleTol, sampleMaxIter, shouldStop)', () => {
    const shouldStop = () => false;
    const o = resolveSolverOptions({ sampleTol: [1e-3, 1e-4], sampleMaxIter: [3, 4], shouldStop });
    expect(o.sampleTol).toEqual([1e-3, 1e-4]);
    expect(o.sampleMaxIter).toEqual([3, 4]);
    expect(o.shouldStop).toBe(shouldStop);
  });

  it('tol: positive and finite', () => {
    for (const tol of [0, -0, -1e-3, NaN, Infinity, -Infinity]) rejects({ tol }, 'tol');
    for (const tol of [Number.MIN_VALUE, 1e-12, 1, 1e300]) expect(resolveSolverOptions({ tol }).tol).toBe(tol);
  });

  it('maxIter: an integer ≥ 1', () => {
    for (const maxIter of [0, -1, 1.5, 0.999, NaN, Infinity]) rejects({ maxIter }, 'maxIter');
    for (const maxIter of [1, 2, 10_000]) expect(resolveSolverOptions({ maxIter }).maxIter).toBe(maxIter);
  });

  it('history: an integer ≥ 1', () => {
    for (const history of [0, -3, 2.5, NaN, Infinity]) rejects({ history }, 'history');
    for (const history of [1, 2, 64]) expect(resolveSolverOptions({ history }).history).toBe(history);
  });

  it('method: one of the three', () => {
    for (const method of ['newton', '', 'Broyden']) rejects({ method: method as SolverOptions['method'] }, 'method');
    for (const method of SOLVER_METHODS) expect(resolveSolverOptions({ method }).method).toBe(method);
  });

  it('stopMode: abs or rel', () => {
    for (const stopMode of ['max', 'ABS']) rejects({ stopMode: stopMode as SolverOptions['stopMode'] }, 'stop mode');
    for (const stopMode of STOP_MODES) expect(resolveSolverOptions({ stopMode }).stopMode).toBe(stopMode);
  });

  it('damping: in (0, 1]', () => {
    for (const damping of [0, -0.5, 1.0000001, 2, NaN]) rejects({ damping }, 'damping');
    for (const damping of [1e-9, 0.5, 1]) expect(resolveSolverOptions({ damping }).damping).toBe(damping);
  });

  it('andersonBeta: in (0, 1]', () => {
    for (const andersonBeta of [0, -0.5, 1.0000001, 2, NaN]) rejects({ andersonBeta }, 'andersonBeta');
    for (const andersonBeta of [1e-9, 0.5, 1]) expect(resolveSolverOptions({ andersonBeta }).andersonBeta).toBe(andersonBeta);
  });

  it('andersonLambda: ≥ 0', () => {
    for (const andersonLambda of [-1e-12, -1, NaN]) rejects({ andersonLambda }, 'andersonLambda');
    for (const andersonLambda of [0, 1e-12, 5]) expect(resolveSolverOptions({ andersonLambda }).andersonLambda).toBe(andersonLambda);
  });

  it('divergenceFactor: > 1 (Infinity turns detection off)', () => {
    for (const divergenceFactor of [1, 0.5, 0, -2, NaN]) rejects({ divergenceFactor }, 'divergenceFactor');
    for (const divergenceFactor of [1.0000001, 1e4, Infinity]) expect(resolveSolverOptions({ divergenceFactor }).divergenceFactor).toBe(divergenceFactor);
  });

  it('restartFactor: > 1 (Infinity disables the guard)', () => {
    for (const restartFactor of [1, 0.5, 0, -2, NaN]) rejects({ restartFactor }, 'restartFactor');
    for (const restartFactor of [1.0000001, 10, Infinity]) expect(resolveSolverOptions({ restartFactor }).restartFactor).toBe(restartFactor);
  });

  it('sampleTol: every value positive and finite', () => {
    for (const bad of [[1e-3, 0], [-1], [NaN], [1e-3, Infinity]]) rejects({ sampleTol: bad }, 'sampleTol');
    expect(Array.from(resolveSolverOptions({ sampleTol: [Number.MIN_VALUE, 5] }).sampleTol!)).toEqual([Number.MIN_VALUE, 5]);
    expect(Array.from(resolveSolverOptions({ sampleTol: Float64Array.of(1e-4) }).sampleTol!)).toEqual([1e-4]);
  });

  it('sampleMaxIter: every value an integer ≥ 1', () => {
    for (const bad of [[1, 0], [2.5], [NaN], [-1], [3, Infinity]]) rejects({ sampleMaxIter: bad }, 'sampleMaxIter');
    expect(Array.from(resolveSolverOptions({ sampleMaxIter: [1, 40] }).sampleMaxIter!)).toEqual([1, 40]);
    expect(Array.from(resolveSolverOptions({ sampleMaxIter: Int32Array.of(2) }).sampleMaxIter!)).toEqual([2]);
  });

  it('names the first bad option when several are bad', () => {
    rejects({ tol: -1, maxIter: 0 }, 'tol');
    rejects({ maxIter: 0, history: 0 }, 'maxIter');
  });

  it('validates what comes from the base too', () => {
    expect(() => resolveSolverOptions({}, { ...SOLVER_DEFAULTS, tol: -1 })).toThrow(/tol/);
    expect(() => resolveSolverOptions({ tol: 1e-3 }, { ...SOLVER_DEFAULTS, tol: -1 })).not.toThrow();
  });
});

describe("solve()'s argument checks", () => {
  const f: FixedPointFn = (z, out, active) => { for (let i = 0; i < z.length; i++) if (active[Math.floor(i / 2)]) out[i] = 0.5 * z[i] + 1; };

  it('rejects bad options before evaluating f', async () => {
    let calls = 0;
    const counted: FixedPointFn = (z, out, a) => { calls++; return f(z, out, a); };
    await expect(solve(counted, 1, 2, new Float32Array(2), { tol: 0 })).rejects.toThrow(/tol/);
    await expect(solve(counted, 1, 2, new Float32Array(2), { method: 'newton' as SolverOptions['method'] })).rejects.toThrow(/newton/);
    expect(calls).toBe(0);
  });

  it('z must hold batch × n values', async () => {
    await expect(solve(f, 2, 2, new Float32Array(3))).rejects.toThrow(/z has 3 values, expected batch × n = 4/);
    await expect(solve(f, 2, 2, new Float32Array(5))).rejects.toThrow(RangeError);
    await expect(solve(f, 2, 2, new Float32Array(4), { tol: 1e-6, stopMode: 'abs' })).resolves.toBeDefined();
  });

  it('sampleTol and sampleMaxIter must have one value per sample', async () => {
    await expect(solve(f, 2, 2, new Float32Array(4), { sampleTol: [1e-3] })).rejects.toThrow(/sampleTol has 1 values/);
    await expect(solve(f, 2, 2, new Float32Array(4), { sampleTol: [1e-3, 1e-3, 1e-3] })).rejects.toThrow(/sampleTol has 3 values/);
    await expect(solve(f, 2, 2, new Float32Array(4), { sampleMaxIter: [5] })).rejects.toThrow(/sampleMaxIter has 1 values/);
    await expect(solve(f, 2, 2, new Float32Array(4), { sampleMaxIter: [5, 5, 5] })).rejects.toThrow(/sampleMaxIter has 3 values/);
    const res = await solve(f, 2, 2, new Float32Array(4), { sampleTol: [1e-1, 1e-1], sampleMaxIter: [2, 3], stopMode: 'abs' });
    expect(res.iterations.length).toBe(2);
  });

  it('a workspace that does not fit the solve is left alone and a fitting one is used', async () => {
    // f(z) = 0.5 z + 1: fixed point 2 in every element.
    for (const kernel of ['js', 'wasm'] as const) {
      const wrongN = new SolverWorkspace('fixed-point', 2, 3, 8, kernel);
      const wrongMethod = new SolverWorkspace('broyden', 2, 2, 8, kernel);
      const wrongHistory = new SolverWorkspace('fixed-point', 2, 2, 4, kernel);
      const wrongBatch = new SolverWorkspace('fixed-point', 1, 2, 8, kernel);
      for (const ws of [wrongN, wrongMethod, wrongHistory, wrongBatch]) {
        const z = new Float32Array(4);
        const res = await solve(f, 2, 2, z, { method: 'fixed-point', tol: 1e-6, stopMode: 'abs', maxIter: 100 }, ws);
        expect(Array.from(res.converged)).toEqual([1, 1]);
        for (const v of z) expect(Math.abs(v - 2)).toBeLessThan(1e-5);
        expect(Array.from(ws.z).every((v) => v === 0)).toBe(true);
        expect(Array.from(ws.active).every((v) => v === 0)).toBe(true);
      }
      const fitting = new SolverWorkspace('fixed-point', 2, 2, 8, kernel);
      let seen: Float32Array | null = null;
      await solve((z, out, a) => { seen = z; return f(z, out, a); }, 2, 2, new Float32Array(4), { method: 'fixed-point', tol: 1e-6, stopMode: 'abs', maxIter: 100 }, fitting);
      expect(seen).toBe(fitting.z);
    }
  });
});
