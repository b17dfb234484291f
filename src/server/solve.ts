import type { FastifyRequest } from 'fastify';
import { DeqError } from '../errors.js';
import { summarizeSolve, type SolveSummary } from '../solver/index.js';
import type { RunOptions } from '../pipelines/text-scoring.js';
import type { ServedModel } from './models.js';
import type { PoolResult } from './pool.js';
import type { InferJob } from './protocol.js';

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
}

/**
 * Runs one request's solve on the pool, records metrics, and applies the
 * deadline policy: "error" turns a solve the deadline cut short into 504.
 */
export async function runSolve(req: FastifyRequest, model: ServedModel, job: InferJob): Promise<PoolResult> {
  const { deq, metrics } = req.server;
  req.logFields = { ...req.logFields, model: model.name, batch: job.batch };
  const result = await deq.pool.submit(model.name, job);
  metrics.observeSolve(model.name, result);
  const s = result.solver;
  const sum = summarizeSolve(s);
  req.logFields.solve = {
    method: result.options.method, iterations_max: sum.maxIterations, residual_max: sum.maxResidual,
    converged: `${sum.converged}/${sum.rows}`, stopped: s.stopped,
    queue_ms: round(result.queueMs), solve_ms: round(result.timing.solveMs), total_ms: round(result.timing.totalMs),
  };
  if (s.stopped && deq.config.onDeadline === 'error') {
    throw new DeqError('DEQ_ERR_DEADLINE_EXCEEDED', `the deadline passed during the solve (after ${sum.maxIterations} iterations, residual ${sum.maxResidual.toPrecision(3)})`);
  }
  return result;
}

/** The wire summary of a solve's rows (all, or `rows`), with the settings it ran with. */
export function solverSummary(r: Pick<PoolResult, 'solver' | 'options'>, rows?: Iterable<number>): SolverSummary {
  return wireSummary(summarizeSolve(r.solver, rows), r.options, r.solver.stopped);
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
  },
} as const;

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
