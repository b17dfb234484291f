import { availableParallelism, cpus } from 'node:os';
import { DeqError } from '../errors.js';
import { caseInputs, DeqModel, modelInputs, toTyped, type InferRequest, type SessionConfig, type SolverPlacement } from '../runtime/index.js';
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

export interface BenchReport {
  model: string;
  provider: string;
  solverPlacement: SolverPlacement;
  batch: number;
  runs: number;
  iterationsMean: number;
  /** Medians over runs, milliseconds. */
  totalMs: number;
  solveMs: number;
  cellMs: number;
  solverMs: number;
  injectMs: number;
  headMs: number;
  /** Share of the solve spent outside ONNX Runtime (median over runs). */
  solverFraction: number;
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
    const total: number[] = [], solveMs: number[] = [], cellMs: number[] = [], inject: number[] = [], head: number[] = [], fraction: number[] = [], iters: number[] = [];
    for (let i = 0; i < opts.runs; i++) {
      const r = await model.infer(req);
      total.push(r.timing.totalMs);
      solveMs.push(r.timing.solveMs);
      cellMs.push(r.timing.cellMs);
      inject.push(r.timing.injectMs);
      head.push(r.timing.headMs);
      fraction.push((r.timing.solveMs - r.timing.cellMs) / r.timing.solveMs);
      iters.push(r.solver.iterations.reduce((a, b) => a + b, 0) / opts.batch);
    }
    const med = (v: number[]) => summarize(v).p50;
    return {
      model: model.name, provider: model.provider, solverPlacement: model.solverPlacement, batch: opts.batch, runs: opts.runs,
      iterationsMean: summarize(iters).mean,
      totalMs: med(total), solveMs: med(solveMs), cellMs: med(cellMs), solverMs: med(solveMs) - med(cellMs),
      injectMs: med(inject), headMs: med(head), solverFraction: med(fraction),
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
