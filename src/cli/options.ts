import type { ParseArgsConfig } from 'node:util';
import { DeqError } from '../errors.js';
import { EXECUTION_PROVIDERS, type ExecutionProvider, type SessionConfig } from '../runtime/index.js';
import { PREDICTION_DEFAULTS } from '../server/solver-options.js';
import { SOLVER_METHODS, STOP_MODES, type SolverMethod, type SolverOptions, type StopMode } from '../solver/index.js';

/** Flags shared by every command that runs a model. */
export const MODEL_FLAGS = {
  tol: { type: 'string' },
  'max-iter': { type: 'string' },
  solver: { type: 'string' },
  'stop-mode': { type: 'string' },
  history: { type: 'string' },
  patience: { type: 'string' },
  'prediction-tol': { type: 'string' },
  'prediction-margin': { type: 'string' },
  ep: { type: 'string' },
  threads: { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

/** Solver overrides from flags; anything unset keeps the bundle's default. */
export function solverFlags(v: Values): Partial<SolverOptions> {
  const out: Partial<SolverOptions> = {};
  if (v.tol !== undefined) out.tol = numberFlag('--tol', v.tol);
  if (v['max-iter'] !== undefined) out.maxIter = intFlag('--max-iter', v['max-iter']);
  if (v.history !== undefined) out.history = intFlag('--history', v.history);
  if (v.solver !== undefined) out.method = enumFlag('--solver', v.solver, SOLVER_METHODS) as SolverMethod;
  if (v['stop-mode'] !== undefined) out.stopMode = enumFlag('--stop-mode', v['stop-mode'], STOP_MODES) as StopMode;
  // Early exit on a stable prediction (classifiers; docs/solver.md): --patience turns it on,
  // with the server's measured defaults for the other two.
  if (v.patience !== undefined) {
    out.patience = intFlag('--patience', v.patience);
    out.predictionTol = v['prediction-tol'] !== undefined ? numberFlag('--prediction-tol', v['prediction-tol']) : PREDICTION_DEFAULTS.predictionTol;
    out.predictionMargin = v['prediction-margin'] !== undefined ? numberFlag('--prediction-margin', v['prediction-margin']) : PREDICTION_DEFAULTS.predictionMargin;
  } else if (v['prediction-tol'] !== undefined || v['prediction-margin'] !== undefined) {
    throw usage('--prediction-tol and --prediction-margin need --patience');
  }
  return out;
}

/** Session settings from `--ep cuda,cpu` and `--threads N`. */
export function sessionFlags(v: Values): Partial<SessionConfig> {
  const out: Partial<SessionConfig> = {};
  if (v.ep !== undefined) {
    out.providers = String(v.ep).split(',').map((p) => enumFlag('--ep', p.trim(), EXECUTION_PROVIDERS) as ExecutionProvider);
  }
  if (v.threads !== undefined) out.intraOpThreads = intFlag('--threads', v.threads);
  return out;
}

export function numberFlag(name: string, raw: unknown): number {
  const n = Number(raw);
  if (raw === '' || !Number.isFinite(n)) throw usage(`${name} must be a number (got "${String(raw)}")`);
  return n;
}

export function intFlag(name: string, raw: unknown): number {
  const n = numberFlag(name, raw);
  if (!Number.isInteger(n) || n < 1) throw usage(`${name} must be a positive integer (got "${String(raw)}")`);
  return n;
}

export function enumFlag(name: string, raw: unknown, allowed: readonly string[]): string {
  const s = String(raw);
  if (!allowed.includes(s)) throw usage(`${name} must be one of ${allowed.join(', ')} (got "${s}")`);
  return s;
}

export function usage(message: string): DeqError {
  return new DeqError('DEQ_ERR_CONFIG_INVALID', message);
}
