import { availableParallelism, cpus } from 'node:os';
import { DeqError } from '../errors.js';
import { caseInputs, DeqModel, modelInputs, toTyped, type InferRequest, type InferResult, type SessionConfig, type SolverPlacement } from '../runtime/index.js';
import type { SolverOptions } from '../solver/index.js';
import { summarize } from './stats.js';

export interface BenchOptions {
  batch: number;
  runs: number;
  warmup: number;
  solver: Partial<SolverOptions>;
  session: Partial<SessionConfig>;
  solverPlacement?: SolverPlacement;
}

/** snake_case, as every machine-readable output of deq-serve. */
export interface BenchReport {
  model: string;
  provider: string;
  solver_placement: SolverPlacement;
  batch: number;
  runs: number;
  nfe_mean: number;
  /**
   * The run with the median total time, milliseconds: one run's parts, so they add up
   * (total = inject + solve + head; solve = cell + solver).
   */
  total_ms: number;
  inject_ms: number;
  solve_ms: number;
  cell_ms: number;
  solver_ms: number;
  head_ms: number;
  /** solver_ms / solve_ms of that run. */
  solver_fraction: number;
  machine: string;
}

/**
 * Times inject → solve → head on a bundle's first parity input, splitting the
 * solve into time inside ONNX Runtime (cell runs) and time in the TypeScript solver.
 */
export async function bench(dir: string, opts: BenchOptions): Promise<BenchReport> {
  const model = await DeqModel.load(dir, opts.session, { solverPlacement: opts.solverPlacement });
  try {
    const req = benchRequest(model, opts.batch);
    req.solver = opts.solver;
    for (let i = 0; i < opts.warmup; i++) await model.infer(req);
    const runs: { timing: InferResult['timing']; nfe: number }[] = [];
    for (let i = 0; i < opts.runs; i++) {
      const r = await model.infer(req);
      runs.push({ timing: r.timing, nfe: r.solver.iterations.reduce((a, b) => a + b, 0) / opts.batch });
    }
    const t = [...runs].sort((x, y) => x.timing.totalMs - y.timing.totalMs)[runs.length >> 1].timing;
    return {
      model: model.name, provider: model.provider, solver_placement: model.solverPlacement, batch: opts.batch, runs: opts.runs,
      nfe_mean: summarize(runs.map((r) => r.nfe)).mean,
      total_ms: t.totalMs, inject_ms: t.injectMs, solve_ms: t.solveMs, cell_ms: t.cellMs, solver_ms: t.solveMs - t.cellMs, head_ms: t.headMs,
      solver_fraction: (t.solveMs - t.cellMs) / t.solveMs,
      machine: `${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores`,
    };
  } finally {
    await model.release();
  }
}

/** A batch made of the bundle's first parity case, repeated. */
export function benchRequest(model: DeqModel, batch: number): InferRequest {
  const c = model.bundle.parity?.cases[0];
  if (!c) throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `${model.name}: bench needs a parity case for its input`);
  const given = caseInputs(model.manifest, c);
  const inputs: Record<string, Float32Array | BigInt64Array> = {};
  let length: number | undefined;
  for (const spec of modelInputs(model.manifest)) {
    const t = given[spec.name];
    if (!t) throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `${model.name}: parity case 0 lacks input "${spec.name}"`);
    const sym = spec.shape.indexOf(-1);
    if (sym >= 0) length = t.shape[sym];
    const one = toTyped(t);
    const out = one instanceof BigInt64Array ? new BigInt64Array(one.length * batch) : new Float32Array(one.length * batch);
    for (let i = 0; i < batch; i++) out.set(one as never, i * one.length);
    inputs[spec.name] = out;
  }
  const lm = model.manifest.task === 'language-model';
  return { inputs, batch, length, ...(lm ? { outputs: [model.manifest.outputs.target_logprobs] } : {}) };
}
