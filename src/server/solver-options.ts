import { DeqError } from '../errors.js';
import { labelingUnsupported } from '../runtime/index.js';
import { SOLVER_METHODS, STOP_MODES, type SolverMethod, type SolverSettings, type StopMode } from '../solver/index.js';
import type { ServerConfig } from './config.js';
import type { ServedModel } from './models.js';

/** The per-request knobs, as named on the wire (query string, JSON body or v2 parameters), already schema-checked. */
export interface WireSolverOptions {
  tol?: number;
  max_iter?: number;
  solver?: SolverMethod;
  /** A residual norm, or `prediction`: early exit on a stable top-1 (classifiers; the residual in the model's own mode). */
  stop_mode?: StopMode | 'prediction';
  deadline_ms?: number;
  /** stop_mode "prediction": iterations the top-1 must hold unchanged. */
  patience?: number;
  /** stop_mode "prediction": the residual must also be below this. */
  prediction_tol?: number;
  /** stop_mode "prediction": the top-1's softmax probability must lead the runner-up's by at least this. */
  prediction_margin?: number;
  /** Return the residual (and a classifier's top-1) at every iteration, per sample. */
  trace?: boolean;
}

/** The wire names of the solver knobs, in the order error messages list them. */
export const SOLVER_PARAMS = Object.freeze(['tol', 'max_iter', 'solver', 'stop_mode', 'deadline_ms', 'patience', 'prediction_tol', 'prediction_margin', 'trace'] as const);

/**
 * stop_mode "prediction" without its knobs: measured over the 10,000 Fashion-MNIST test images
 * (docs/solver.md, "Early exit"), chosen on the first 2,000.
 */
export const PREDICTION_DEFAULTS = Object.freeze({ patience: 3, predictionTol: 0.1, predictionMargin: 0.8 });

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
    stop_mode: { type: 'string', enum: [...STOP_MODES, 'prediction'], description: `one of ${STOP_MODES.join(', ')}, prediction` },
    deadline_ms: { type: 'integer', minimum: 1, maximum: c.requestTimeoutMs, description: `an integer in [1, ${c.requestTimeoutMs}] (milliseconds)` },
    patience: { type: 'integer', minimum: 1, maximum: c.maxIterCap, description: `an integer in [1, ${c.maxIterCap}]` },
    prediction_tol: { type: 'number', exclusiveMinimum: 0, maximum: 1e6, description: 'a number in (0, 1e6]' },
    prediction_margin: { type: 'number', minimum: 0, maximum: 1, description: 'a number in [0, 1]' },
    trace: { type: 'boolean', description: 'true or false' },
  } as const;
}

export interface RequestControl {
  /** Every setting the solve runs with: the model's effective defaults, then the request's. */
  solver: SolverSettings;
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
  const prediction = raw.stop_mode === 'prediction';
  if (!prediction) {
    const stray = (['patience', 'prediction_tol', 'prediction_margin'] as const).find((k) => raw[k] !== undefined);
    if (stray) throw new DeqError('DEQ_ERR_INVALID_SOLVER_OPTION', `${stray} applies to stop_mode "prediction" only`);
  } else {
    const why = labelingUnsupported(model.manifest);
    if (why) throw new DeqError('DEQ_ERR_INVALID_SOLVER_OPTION', `stop_mode "prediction" needs a classifier: ${why}`);
  }
  return {
    solver: {
      method: raw.solver ?? d.method,
      tol: raw.tol ?? d.tol,
      // Early exit keeps the model's residual norm for tol and prediction_tol.
      stopMode: prediction ? d.stopMode : (raw.stop_mode as StopMode | undefined) ?? d.stopMode,
      maxIter: raw.max_iter ?? d.maxIter,
      ...(prediction ? {
        patience: raw.patience ?? PREDICTION_DEFAULTS.patience,
        predictionTol: raw.prediction_tol ?? PREDICTION_DEFAULTS.predictionTol,
        predictionMargin: raw.prediction_margin ?? PREDICTION_DEFAULTS.predictionMargin,
      } : {}),
      ...(raw.trace ? { trace: true } : {}),
    },
    deadline: now + budgetMs,
    budgetMs,
  };
}
