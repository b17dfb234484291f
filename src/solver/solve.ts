import { SOLVER_DEFAULTS, type FixedPointFn, type ResolvedSolverOptions, type SolveResult, type SolverOptions } from './types.js';
import { SolverWorkspace } from './workspace.js';
import { SolveSession } from './session.js';

/**
 * Finds z* = f(z*) for every sample of a batch.
 *
 * `z` holds the initial guess on entry (zeros for a DEQ) and the lowest-residual
 * iterate of each sample on return. Samples stop independently: one that
 * converges (or diverges, or hits maxIter) is no longer evaluated while the
 * rest go on, and `f` is told which rows are still active. A SolveSession with
 * every sample admitted at the start.
 */
export async function solve(
  f: FixedPointFn,
  batch: number,
  n: number,
  z: Float32Array,
  options: Partial<SolverOptions> = {},
  workspace?: SolverWorkspace,
): Promise<SolveResult> {
  const opts = resolveSolverOptions(options);
  if (z.length !== batch * n) throw new RangeError(`z has ${z.length} values, expected batch × n = ${batch * n}`);
  const { sampleTol, sampleMaxIter } = opts;
  if (sampleTol && sampleTol.length !== batch) throw new RangeError(`sampleTol has ${sampleTol.length} values, expected one per sample (${batch})`);
  if (sampleMaxIter && sampleMaxIter.length !== batch) throw new RangeError(`sampleMaxIter has ${sampleMaxIter.length} values, expected one per sample (${batch})`);
  const ws = workspace && workspace.fits(opts.method, batch, n, opts.history)
    ? workspace
    : new SolverWorkspace(opts.method, batch, n, opts.history);
  const { predict, onIteration } = opts;
  if (opts.patience > 0 && !predict) throw new RangeError('patience (early exit on a stable prediction) needs a predict function');
  const session = new SolveSession(ws, opts);
  for (let i = 0; i < batch; i++) {
    session.admit(i, {
      tol: sampleTol ? sampleTol[i] : opts.tol, maxIter: sampleMaxIter ? sampleMaxIter[i] : opts.maxIter, stopMode: opts.stopMode,
      patience: opts.patience, predictionTol: opts.predictionTol, predictionMargin: opts.predictionMargin,
      trace: opts.trace || onIteration !== undefined, traceLabels: predict !== undefined,
    }, z.subarray(i * n, (i + 1) * n));
  }

  let calls = 0;
  let stopped = false;
  const evaluated = onIteration ? new Uint8Array(batch) : null;
  while (session.activeCount > 0) {
    if (calls > 0 && opts.shouldStop?.()) {
      stopped = true;
      break;
    }
    await f(ws.z, ws.fz, ws.active);
    calls++;
    const want = predict && session.predictionMask();
    if (want) await predict(ws.z, want, session.prediction, session.predictionMargin);
    evaluated?.set(ws.active);
    session.advance();
    if (evaluated) {
      for (let i = 0; i < batch; i++) {
        if (!evaluated[i]) continue;
        const it = session.iterations[i];
        onIteration!(i, it, session.trace[i]![it - 1], session.traceLabels[i]?.[it - 1] ?? -1);
      }
    }
  }
  for (let i = 0; i < batch; i++) z.set(session.bestRow(i), i * n);

  const { iterations, residual, converged, diverged, end } = session;
  const result: SolveResult = { iterations, residual, converged, diverged, end, calls, stopped };
  if (opts.trace) result.trace = session.trace.map((t, i) => t!.slice(0, iterations[i]));
  if (opts.trace && predict) result.traceLabels = session.traceLabels.map((t, i) => t!.slice(0, iterations[i]));
  return result;
}

/**
 * Fills unset (or undefined) options from `base` and validates the result.
 * Throws RangeError naming the first bad option.
 */
export function resolveSolverOptions(overrides: Partial<SolverOptions>, base: ResolvedSolverOptions = SOLVER_DEFAULTS): ResolvedSolverOptions {
  const opts = { ...base } as ResolvedSolverOptions;
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) (opts as unknown as Record<string, unknown>)[k] = v;
  validateOptions(opts);
  return opts;
}

function validateOptions(o: ResolvedSolverOptions): void {
  if (!(o.tol > 0) || !Number.isFinite(o.tol)) throw new RangeError(`tol must be a positive finite number (got ${o.tol})`);
  if (!Number.isInteger(o.maxIter) || o.maxIter < 1) throw new RangeError(`maxIter must be an integer ≥ 1 (got ${o.maxIter})`);
  if (!Number.isInteger(o.history) || o.history < 1) throw new RangeError(`history must be an integer ≥ 1 (got ${o.history})`);
  if (o.method !== 'broyden' && o.method !== 'anderson' && o.method !== 'fixed-point') throw new RangeError(`unknown solver method ${String(o.method)}`);
  if (o.stopMode !== 'abs' && o.stopMode !== 'rel') throw new RangeError(`unknown stop mode ${String(o.stopMode)}`);
  if (!(o.damping > 0 && o.damping <= 1)) throw new RangeError(`damping must be in (0, 1] (got ${o.damping})`);
  if (!(o.andersonBeta > 0 && o.andersonBeta <= 1)) throw new RangeError(`andersonBeta must be in (0, 1] (got ${o.andersonBeta})`);
  if (!(o.andersonLambda >= 0)) throw new RangeError(`andersonLambda must be ≥ 0 (got ${o.andersonLambda})`);
  if (!(o.divergenceFactor > 1)) throw new RangeError(`divergenceFactor must be > 1 (got ${o.divergenceFactor})`);
  if (!Number.isInteger(o.patience) || o.patience < 0) throw new RangeError(`patience must be an integer ≥ 0 (got ${o.patience})`);
  if (!(o.predictionTol > 0)) throw new RangeError(`predictionTol must be > 0 (got ${o.predictionTol})`);
  if (!(o.predictionMargin >= 0 && o.predictionMargin <= 1)) throw new RangeError(`predictionMargin must be in [0, 1] (got ${o.predictionMargin})`);
  if (!(o.restartFactor > 1)) throw new RangeError(`restartFactor must be > 1 (got ${o.restartFactor})`);
  if (o.sampleTol) for (const t of Array.from(o.sampleTol)) if (!(t > 0) || !Number.isFinite(t)) throw new RangeError(`sampleTol values must be positive finite numbers (got ${t})`);
  if (o.sampleMaxIter) for (const k of Array.from(o.sampleMaxIter)) if (!Number.isInteger(k) || k < 1) throw new RangeError(`sampleMaxIter values must be integers ≥ 1 (got ${k})`);
}


