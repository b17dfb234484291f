import type { FastifyRequest } from 'fastify';
import { DeqError } from '../errors.js';
import { STOP_REASONS, summarizeSolve, type SolveSummary, type StopReason } from '../solver/index.js';
import type { RunOptions } from '../pipelines/text-scoring.js';
import type { ServedModel } from './models.js';
import type { PoolResult } from './pool.js';
import type { InferJob, IterationEvent } from './protocol.js';
import { resolveDims } from '../runtime/index.js';
import { FixedPointCache } from './response-cache.js';
import { admitRequest, requestCost } from './admission.js';

/**
 * The `solver` object of a response. Over several rows (a text scored in
 * several windows), iterations and residual are the worst row's, converged
 * means every row converged, diverged that any did.
 */
export interface SolverSummary {
  method: string;
  tol: number;
  max_iter: number;
  stop_mode: string;
  iterations: number;
  residual: number | null;
  converged: boolean;
  diverged: boolean;
  /** The request deadline cut the solve short (policy "best-effort"). */
  deadline_exceeded: boolean;
  /** Answered from the fixed-point response cache, with no solve. */
  cached?: boolean;
  /** The solve started from a given state (deq_state, or the request's sequence), not from zeros. */
  warm_start?: boolean;
  /** stop_mode "prediction": its settings. */
  patience?: number;
  prediction_tol?: number;
  prediction_margin?: number;
  /** Why each sample stopped, in sample order (not on /score, whose rows are windows). */
  stop_reasons?: StopReason[];
  /** trace=true: per sample, the residual after each evaluation and (classifiers) the top-1 of each iterate. */
  trace?: { residual: (number | null)[]; top1?: number[] }[];
}

/**
 * Runs one request's solve on the pool, records metrics, and applies the
 * deadline policy: "error" turns a solve the deadline cut short into 504.
 */
export async function runSolve(req: FastifyRequest, model: ServedModel, job: InferJob, onProgress?: (events: IterationEvent[]) => void): Promise<PoolResult> {
  const { deq, metrics } = req.server;
  req.logFields = { ...req.logFields, model: model.name, batch: job.batch };
  let spent = SPENT.get(req);
  if (!spent) SPENT.set(req, spent = { solves: 0, queueMs: 0, workerMs: 0 });
  // A request of several solves (/score windows) may reach its deadline between them
  // ("best-effort" still runs them: each stops at once with its best iterate).
  if (deq.config.onDeadline === 'error' && Date.now() >= job.deadline) throw new DeqError('DEQ_ERR_DEADLINE_EXCEEDED', `the deadline passed ${whereTimeWent(req, spent)}, before its next solve was queued`);
  if (onProgress) job.stream = true;
  job.cost = requestCost(model.manifest, job.batch, job.solver.maxIter, job.length);
  admitRequest(job.cost, deq.config.maxRequestCost, 'this solve');
  // Traces are per request and large: they are neither served from the cache nor stored.
  // A warm start or a returned state is per client too: not cached.
  const cache = deq.cache?.enabled(model.name) && !job.solver.trace && !job.stream && !job.z0 && !job.returnState ? deq.cache : undefined;
  const key = cache && FixedPointCache.key(model.name, model.manifest.version ?? '1', job);
  if (cache && key) {
    const hit = cache.get(key);
    if (hit) {
      metrics.cacheHits.inc({ model: model.name });
      req.logFields.solve = { cache: 'hit' };
      return { ...hit, cached: true, queueMs: 0, timing: { injectMs: 0, solveMs: 0, cellMs: 0, headMs: 0, totalMs: 0 } };
    }
    metrics.cacheMisses.inc({ model: model.name });
  }
  let result: PoolResult;
  try {
    // A client that goes away frees its place in the queue, or its solver rows at the next
    // iteration (plugins/client-gone.ts); one already gone (between /score windows) costs no solve.
    if (req.gone.aborted) throw new DeqError('DEQ_ERR_CANCELLED', 'the client went away before this solve was queued');
    result = await deq.pool.submit(model.name, job, req.gone, onProgress, model);
  } catch (err) {
    if (err instanceof DeqError && err.code === 'DEQ_ERR_DEADLINE_EXCEEDED') {
      throw new DeqError('DEQ_ERR_DEADLINE_EXCEEDED', `the deadline passed ${whereTimeWent(req, spent)}; ${err.message.replace(/^the deadline passed /, 'the last solve waited ')}`);
    }
    throw err;
  }
  if (job.z0) result = { ...result, warmStart: true };
  // A solve a deadline cut short is not the answer to these settings: not stored.
  if (cache && key && !result.solver.stopped) for (const m of cache.put(key, model.name, result)) metrics.cacheEvictions.inc({ model: m });
  spent.solves++;
  spent.queueMs += result.queueMs;
  spent.workerMs += result.timing.totalMs;
  metrics.observeSolve(model.name, result);
  const s = result.solver;
  const sum = summarizeSolve(s);
  req.logFields.solve = {
    method: result.options.method, iterations_max: sum.maxIterations, residual_max: sum.maxResidual,
    converged: `${sum.converged}/${sum.rows}`, stopped: s.stopped,
    queue_ms: round(result.queueMs), solve_ms: round(result.timing.solveMs), total_ms: round(result.timing.totalMs),
  };
  if (s.stopped && deq.config.onDeadline === 'error') {
    throw new DeqError('DEQ_ERR_DEADLINE_EXCEEDED', `the deadline passed during a solve (after ${sum.maxIterations} iterations, residual ${sum.maxResidual.toPrecision(3)}); ${whereTimeWent(req, spent)}`);
  }
  return result;
}

/** A request's place in a stateful sequence (Triton's parameter names). */
export interface SequenceFlags {
  id: string;
  start: boolean;
  end: boolean;
}

/** The sequence flags of a request's wire fields, if it names a sequence. */
export function sequenceFlags(p: { sequence_id?: string | number; sequence_start?: unknown; sequence_end?: unknown } | undefined): SequenceFlags | undefined {
  if (p?.sequence_id === undefined) return undefined;
  return { id: String(p.sequence_id), start: p.sequence_start === true, end: p.sequence_end === true };
}

/** JSON Schema properties of the sequence fields. */
export const SEQUENCE_PARAMS_SCHEMA = {
  sequence_id: { type: ['string', 'integer'], minLength: 1, maxLength: 128, description: 'a string of 1 to 128 characters, or an integer' },
  sequence_start: { type: 'boolean', description: 'true or false' },
  sequence_end: { type: 'boolean', description: 'true or false' },
} as const;

/**
 * runSolve for a request that may belong to a stateful sequence (sequence_id): its solve
 * starts from the sequence's last z* (unless the client sent its own initial state, or the
 * shape changed, or `sequence_start`), and its z* becomes the sequence's state
 * (`sequence_end` forgets it). Only where the solve starts depends on the stored state.
 */
export async function runSequenced(req: FastifyRequest, model: ServedModel, job: InferJob, seq: SequenceFlags | undefined, onProgress?: (events: IterationEvent[]) => void): Promise<PoolResult> {
  const store = req.server.deq.sequences;
  if (!seq) return runSolve(req, model, job, onProgress);
  if (!store || store.maxSequences === 0) throw new DeqError('DEQ_ERR_INVALID_INPUT', 'stateful sequences are off on this server (--max-sequences 0); send the state yourself as deq_state');
  const dims = [job.batch, ...resolveDims(model.manifest.state.shape, job.length)];
  const { z0 } = store.begin(model.name, seq.id, dims, seq.start);
  // Copied: a job's arrays are transferred to the worker.
  const run = { ...job, returnState: true, ...(job.z0 === undefined && z0 ? { z0: Float32Array.from(z0) } : {}) };
  const result = await runSolve(req, model, run, onProgress);
  store.finish(model.name, seq.id, dims, result.state?.data as Float32Array | undefined, seq.end);
  return job.returnState ? result : { ...result, state: undefined };
}

/** The wire summary of a solve's samples, with the settings it ran with, why each stopped and (trace=true) its trace. */
export function solverSummary(r: Pick<PoolResult, 'solver' | 'options' | 'cached' | 'warmStart'>): SolverSummary {
  const s = r.solver, o = r.options;
  const trace = s.trace?.map((t, i) => ({ residual: Array.from(t, (x) => (Number.isFinite(x) ? x : null)), ...(s.traceLabels ? { top1: Array.from(s.traceLabels[i]) } : {}) }));
  return {
    ...wireSummary(summarizeSolve(s), o, s.stopped),
    ...(o.patience > 0 ? { stop_mode: 'prediction', patience: o.patience, prediction_tol: o.predictionTol, prediction_margin: o.predictionMargin } : {}),
    stop_reasons: Array.from(s.end, (e) => STOP_REASONS[e] ?? 'deadline'),
    ...(trace ? { trace } : {}),
    ...(r.cached ? { cached: true } : {}),
    ...(r.warmStart ? { warm_start: true } : {}),
  };
}

/** A SolveSummary as the `solver` object of a response. */
export function wireSummary(s: SolveSummary, o: RunOptions, stopped: boolean): SolverSummary {
  return {
    method: o.method,
    tol: o.tol,
    max_iter: o.maxIter,
    stop_mode: o.stopMode,
    iterations: s.maxIterations,
    residual: Number.isFinite(s.maxResidual) ? s.maxResidual : null,
    converged: s.converged === s.rows,
    diverged: s.diverged > 0,
    deadline_exceeded: stopped,
  };
}

/** Several responses' summaries as one: the worst of each (a multi-text /score request). */
export function mergeSummaries(list: readonly SolverSummary[]): SolverSummary {
  return {
    ...list[0],
    iterations: Math.max(...list.map((s) => s.iterations)),
    residual: list.some((s) => s.residual === null) ? null : Math.max(...list.map((s) => s.residual as number)),
    converged: list.every((s) => s.converged),
    diverged: list.some((s) => s.diverged),
    deadline_exceeded: list.some((s) => s.deadline_exceeded),
    ...(list.some((s) => s.trace) ? { trace: list.flatMap((s) => s.trace ?? []) } : {}),
  };
}

/** JSON Schema of SolverSummary, for response serialization. */
export const SOLVER_SUMMARY_SCHEMA = {
  type: 'object',
  required: ['method', 'tol', 'max_iter', 'stop_mode', 'iterations', 'residual', 'converged', 'diverged', 'deadline_exceeded'],
  properties: {
    method: { type: 'string' },
    tol: { type: 'number' },
    max_iter: { type: 'integer' },
    stop_mode: { type: 'string' },
    iterations: { type: 'integer' },
    residual: { type: ['number', 'null'] },
    converged: { type: 'boolean' },
    diverged: { type: 'boolean' },
    deadline_exceeded: { type: 'boolean' },
    cached: { type: 'boolean' },
    warm_start: { type: 'boolean' },
    patience: { type: 'integer' },
    prediction_tol: { type: 'number' },
    prediction_margin: { type: 'number' },
    stop_reasons: { type: 'array', items: { type: 'string', enum: [...new Set(STOP_REASONS)] } },
    trace: {
      type: 'array',
      items: {
        type: 'object', required: ['residual'],
        properties: { residual: { type: 'array', items: { type: ['number', 'null'] } }, top1: { type: 'array', items: { type: 'integer' } } },
      },
    },
  },
} as const;

/** Worker and queue time per request, so a deadline message can say where the time went. */
const SPENT = new WeakMap<FastifyRequest, { solves: number; queueMs: number; workerMs: number }>();

function whereTimeWent(req: FastifyRequest, s: { solves: number; queueMs: number; workerMs: number }): string {
  const total = Math.round(performance.now() - req.startedAt);
  return `${total} ms into the request: ${s.solves} solve(s) done, ${Math.round(s.workerMs)} ms on a worker and ${Math.round(s.queueMs)} ms queued for one`;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
