import type { FastifyRequest } from 'fastify';
import { DeqError } from '../errors.js';
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
  let spent = SPENT.get(req);
  if (!spent) SPENT.set(req, spent = { solves: 0, queueMs: 0, workerMs: 0 });
  // A request of several solves (/score windows) may reach its deadline between them.
  if (Date.now() >= job.deadline) throw new DeqError('DEQ_ERR_DEADLINE_EXCEEDED', `the deadline passed ${whereTimeWent(req, spent)}, before its next solve was queued`);
  let result: PoolResult;
  try {
    result = await deq.pool.submit(model.name, job);
  } catch (err) {
    if (err instanceof DeqError && err.code === 'DEQ_ERR_DEADLINE_EXCEEDED') {
      throw new DeqError('DEQ_ERR_DEADLINE_EXCEEDED', `the deadline passed ${whereTimeWent(req, spent)}; ${err.message.replace(/^the deadline passed /, 'the last solve waited ')}`);
    }
    throw err;
  }
  spent.solves++;
  spent.queueMs += result.queueMs;
  spent.workerMs += result.timing.totalMs;
  metrics.observeSolve(model.name, result);
  const s = result.solver;
  let maxIter = 0, maxRes = 0, converged = 0;
  for (let i = 0; i < s.iterations.length; i++) {
    maxIter = Math.max(maxIter, s.iterations[i]);
    maxRes = Math.max(maxRes, s.residual[i]);
    converged += s.converged[i];
  }
  req.logFields.solve = {
    method: result.options.method, iterations_max: maxIter, residual_max: maxRes,
    converged: `${converged}/${s.iterations.length}`, stopped: s.stopped,
    queue_ms: round(result.queueMs), solve_ms: round(result.timing.solveMs), total_ms: round(result.timing.totalMs),
  };
  if (s.stopped && deq.config.onDeadline === 'error') {
    throw new DeqError('DEQ_ERR_DEADLINE_EXCEEDED', `the deadline passed during a solve (after ${maxIter} iterations, residual ${maxRes.toPrecision(3)}); ${whereTimeWent(req, spent)}`);
  }
  return result;
}

export function solverSummary(r: PoolResult, rows?: readonly number[]): SolverSummary {
  const s = r.solver;
  const idx = rows ?? Array.from(s.iterations, (_, i) => i);
  let iterations = 0, residual = 0, converged = true, diverged = false;
  for (const i of idx) {
    iterations = Math.max(iterations, s.iterations[i]);
    residual = Math.max(residual, s.residual[i]);
    converged &&= s.converged[i] === 1;
    diverged ||= s.diverged[i] === 1;
  }
  return {
    method: r.options.method,
    tol: r.options.tol,
    max_iter: r.options.maxIter,
    stop_mode: r.options.stopMode,
    iterations,
    residual: Number.isFinite(residual) ? residual : null,
    converged,
    diverged,
    deadline_exceeded: s.stopped,
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

/** Worker and queue time per request, so a deadline message can say where the time went. */
const SPENT = new WeakMap<FastifyRequest, { solves: number; queueMs: number; workerMs: number }>();

function whereTimeWent(req: FastifyRequest, s: { solves: number; queueMs: number; workerMs: number }): string {
  const total = Math.round(performance.now() - req.startedAt);
  return `${total} ms into the request: ${s.solves} solve(s) done, ${Math.round(s.workerMs)} ms on a worker and ${Math.round(s.queueMs)} ms queued for one`;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
