import { SOLVER_METHODS, STOP_MODES, type SolverMethod, type StopMode } from '../solver/index.js';
import type { ServerConfig } from './config.js';
import type { ServedModel } from './models.js';
import type { RequestSolver } from './protocol.js';

/** The per-request knobs, as named on the wire (query string, JSON body or v2 parameters), already schema-checked. */
export interface WireSolverOptions {
  tol?: number;
  max_iter?: number;
  solver?: SolverMethod;
  stop_mode?: StopMode;
  deadline_ms?: number;
}

/** The wire names of the solver knobs, in the order error messages list them. */
export const SOLVER_PARAMS = Object.freeze(['tol', 'max_iter', 'solver', 'stop_mode', 'deadline_ms'] as const);

/**
 * JSON Schema properties for the solver knobs, with the server caps as ranges.
 * Routes spread these into their querystring or body schema; `description`
 * is what a 400 says the value must be (errors plugin).
 */
export function solverParamsSchema(c: Readonly<ServerConfig>) {
  return {
    tol: { type: 'number', minimum: c.tolMin, maximum: c.tolMax, description: `a number in [${c.tolMin}, ${c.tolMax}]` },
    max_iter: { type: 'integer', minimum: 1, maximum: c.maxIterCap, description: `an integer in [1, ${c.maxIterCap}]` },
    solver: { type: 'string', enum: [...SOLVER_METHODS], description: `one of ${SOLVER_METHODS.join(', ')}` },
    stop_mode: { type: 'string', enum: [...STOP_MODES], description: `one of ${STOP_MODES.join(', ')}` },
    deadline_ms: { type: 'integer', minimum: 1, maximum: c.requestTimeoutMs, description: `an integer in [1, ${c.requestTimeoutMs}] (milliseconds)` },
  } as const;
}

export interface RequestControl {
  /** Every setting the solve runs with: the model's effective defaults, then the request's. */
  solver: RequestSolver;
  /** Absolute deadline (Date.now() ms). */
  deadline: number;
  /** The budget in ms the deadline came from. */
  budgetMs: number;
}

/**
 * The one resolution of a request's solver settings: the model's effective
 * defaults (manifest clamped to the server caps at startup), then the request.
 * Ranges were enforced by the route schema.
 */
export function requestControl(model: ServedModel, raw: WireSolverOptions, config: Readonly<ServerConfig>, now = Date.now()): RequestControl {
  const d = model.solver;
  const budgetMs = raw.deadline_ms ?? config.requestTimeoutMs;
  return {
    solver: {
      method: raw.solver ?? d.method,
      tol: raw.tol ?? d.tol,
      stopMode: raw.stop_mode ?? d.stopMode,
      maxIter: raw.max_iter ?? d.maxIter,
    },
    deadline: now + budgetMs,
    budgetMs,
  };
}
