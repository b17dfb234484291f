import { DeqError } from '../errors.js';
import { SOLVER_METHODS, STOP_MODES, type SolverMethod, type StopMode } from '../solver/index.js';
import type { ServerConfig } from './config.js';
import type { RequestSolver } from './protocol.js';

/** The per-request knobs, as named on the wire (query string, JSON body or v2 parameters). */
export interface WireSolverOptions {
  tol?: unknown;
  max_iter?: unknown;
  solver?: unknown;
  stop_mode?: unknown;
  deadline_ms?: unknown;
}

export interface RequestControl {
  solver: RequestSolver;
  /** Absolute deadline (Date.now() ms). */
  deadline: number;
  /** The budget in ms the deadline came from. */
  budgetMs: number;
}

/**
 * Validates the request's solver settings against the server caps. Query
 * strings arrive as text, so numeric strings are accepted. Throws
 * DEQ_ERR_INVALID_SOLVER_OPTION stating the allowed range.
 */
export function parseSolverControl(raw: WireSolverOptions, config: Readonly<ServerConfig>, now = Date.now()): RequestControl {
  const solver: RequestSolver = {};
  if (raw.tol !== undefined) {
    const tol = toNumber(raw.tol);
    if (!(tol >= config.tolMin && tol <= config.tolMax)) {
      throw bad(`tol must be a number in [${config.tolMin}, ${config.tolMax}] (got ${show(raw.tol)})`, 'tol');
    }
    solver.tol = tol;
  }
  if (raw.max_iter !== undefined) {
    const n = toNumber(raw.max_iter);
    if (!Number.isInteger(n) || n < 1 || n > config.maxIterCap) {
      throw bad(`max_iter must be an integer in [1, ${config.maxIterCap}] (got ${show(raw.max_iter)})`, 'max_iter');
    }
    solver.maxIter = n;
  }
  if (raw.solver !== undefined) {
    if (!SOLVER_METHODS.includes(raw.solver as SolverMethod)) throw bad(`solver must be one of ${SOLVER_METHODS.join(', ')} (got ${show(raw.solver)})`, 'solver');
    solver.method = raw.solver as SolverMethod;
  }
  if (raw.stop_mode !== undefined) {
    if (!STOP_MODES.includes(raw.stop_mode as StopMode)) throw bad(`stop_mode must be one of ${STOP_MODES.join(', ')} (got ${show(raw.stop_mode)})`, 'stop_mode');
    solver.stopMode = raw.stop_mode as StopMode;
  }
  let budgetMs = config.requestTimeoutMs;
  if (raw.deadline_ms !== undefined) {
    const d = toNumber(raw.deadline_ms);
    if (!Number.isInteger(d) || d < 1 || d > config.requestTimeoutMs) {
      throw bad(`deadline_ms must be an integer in [1, ${config.requestTimeoutMs}] (got ${show(raw.deadline_ms)})`, 'deadline_ms');
    }
    budgetMs = d;
  }
  return { solver, deadline: now + budgetMs, budgetMs };
}

function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v.trim() !== '') return Number(v);
  return NaN;
}

function show(v: unknown): string {
  return JSON.stringify(v)?.slice(0, 40) ?? String(v);
}

function bad(message: string, option: string): DeqError {
  return new DeqError('DEQ_ERR_INVALID_SOLVER_OPTION', message, { option });
}
