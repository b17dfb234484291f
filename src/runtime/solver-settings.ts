// The solver settings of a model's calls: the manifest's defaults, a request's overrides
// resolved on them, and whether the model can label iterates (what early exit needs).
import { DeqError } from '../errors.js';
import { resolveSolverOptions, type ResolvedSolverOptions, type SolverOptions } from '../solver/index.js';
import type { Manifest } from './manifest.js';

/** The manifest's solver block as solver options; what it leaves out comes from SOLVER_DEFAULTS. */
export function solverDefaults(m: Manifest): ResolvedSolverOptions {
  const s = m.solver;
  return resolveSolverOptions({
    method: s.method,
    tol: s.tol,
    stopMode: s.stop_mode,
    maxIter: s.max_iter,
    history: s.history,
    andersonLambda: s.anderson_lambda,
    andersonBeta: s.anderson_beta,
    damping: s.damping,
  });
}

/** Why a model cannot label its iterates (early exit, label trace), or null when it can. */
export function labelingUnsupported(m: Manifest): string | null {
  const head = m.graphs.head;
  if (!head || !m.outputs.logits) return `${m.name} has no classifier head (manifest.outputs.logits)`;
  if (head.inputs.length !== 1 || m.state.shape.includes(-1)) return `${m.name}'s head reads more than a fixed-size z`;
  return null;
}

/** A request's overrides on the model's defaults, resolved; a bad or unsupported setting is DEQ_ERR_INVALID_SOLVER_OPTION. */
export function requestSolverOptions(m: Manifest, overrides: Partial<SolverOptions> | undefined, defaults: ResolvedSolverOptions): ResolvedSolverOptions {
  let options: ResolvedSolverOptions;
  try {
    options = resolveSolverOptions(overrides ?? {}, defaults);
  } catch (err) {
    throw new DeqError('DEQ_ERR_INVALID_SOLVER_OPTION', (err as Error).message);
  }
  if (options.patience > 0) {
    const why = labelingUnsupported(m);
    if (why) throw new DeqError('DEQ_ERR_INVALID_SOLVER_OPTION', `stop_mode "prediction" needs a classifier: ${why}`);
  }
  return options;
}
