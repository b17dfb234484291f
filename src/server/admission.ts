// Cost-based admission (Triton's rate limiter is the anchor): what a request costs, the
// per-request budget it is admitted against, and each model's budget for the work it may have
// on the workers at once, so that one model's heavy requests leave workers for the others.
import { DeqError } from '../errors.js';
import { resolveDims, type Manifest } from '../runtime/index.js';

/**
 * A request's cost: the most state values its solve may compute, batch × max_iter × state
 * elements per sample (a sequence model's at the request's length). The unit is the same for
 * every model, so budgets compare a heavy image batch and a long text on one scale.
 */
export function requestCost(m: Manifest, batch: number, maxIter: number, length?: number): number {
  return batch * maxIter * stateElements(m, length);
}

/** State values per sample (at `length` for a model with a sequence dimension). */
export function stateElements(m: Manifest, length?: number): number {
  return resolveDims(m.state.shape, length ?? 1).reduce((a, d) => a * d, 1);
}

/** Refuses a request over the per-request budget (`--max-request-cost`; 0: none) with 413 DEQ_ERR_TOO_COSTLY. */
export function admitRequest(cost: number, budget: number, what: string): void {
  if (budget > 0 && cost > budget) {
    throw new DeqError('DEQ_ERR_TOO_COSTLY',
      `${what} would cost ${cost} state-value iterations (batch × max_iter × state size), over the ${budget} one request may (--max-request-cost); ask for a smaller batch or max_iter`);
  }
}

/**
 * A model's budget: the cost its requests together may have on the workers at once
 * (`--model-cost-budget`; 0: this default). The default holds `workers` requests of the
 * largest batch at the model's own max_iter (at its full context), so ordinary traffic never
 * waits on it, while requests that ask for far more iterations run one at a time.
 */
export function modelBudget(m: Manifest, configured: number, workers: number, maxBatch: number): number {
  if (configured > 0) return configured;
  return workers * requestCost(m, maxBatch, m.solver.max_iter, m.tokenizer?.context);
}
