// The pool's dispatch policy as a pure function: which worker a request goes to now, or none
// (it waits in its model's queue), by the batching mode of the request's model. No timers, no
// threads: unit-tested in test/server/dispatch.test.ts.

/** What dispatch needs to know of one worker. */
export interface WorkerLoad {
  ready: boolean;
  /** Requests on it now, of every model. */
  jobs: number;
  /** Of them, those of models with batching off: the one running on its lane and those it holds. */
  serialJobs: number;
  /** Their rows (samples). */
  rows: number;
  /** Their cost (admission.ts): with batching off, how long the worker is busy. */
  cost: number;
}

/** What dispatch needs to know of the request and its model. */
export interface DispatchRequest {
  /** Its model has batching off: one of its requests at a time per worker (held behind each other). */
  serial: boolean;
  rows: number;
  cost: number;
  /** Cost of the model's requests on the workers now. */
  modelCost: number;
  /** The model's budget (admission.ts modelBudget). */
  modelBudget: number;
}

export interface DispatchPolicy {
  /** Batching off: requests a busy lane may hold besides the one it runs. */
  prefetch: number;
  /** Batching: rows per cell run. */
  maxRows: number;
  /** Models the pool serves: with one, there is nobody to leave workers for. */
  models: number;
}

/**
 * The index of the worker `req` goes to now, or -1 (it waits).
 *
 * Fair share: while several models are served, a model whose requests on the workers already
 * cost more than its budget with this one added waits, so its heavy requests run one at a time
 * and leave the other workers to the other models. A request alone always may run.
 *
 * Batching off (the request's model): an idle worker; else a busy worker whose lane is free (it
 * starts at once, beside the other models' batched solves), else one whose lane has room to hold
 * it; among those, the one whose work costs the least (the one that will be free soonest: never
 * behind a 30 s solve when a short one ends first).
 * Batching on or static: the least loaded worker whose rows leave room for it (up to twice a
 * solve's rows, so the next requests are at hand to join), or an idle one for a request bigger
 * than that. Rows of every model count: a worker's models share its thread.
 */
export function pickWorker(workers: readonly WorkerLoad[], req: DispatchRequest, policy: DispatchPolicy): number {
  if (policy.models > 1 && req.modelCost > 0 && req.modelCost + req.cost > req.modelBudget) return -1;
  let best = -1;
  if (req.serial) {
    for (let i = 0; i < workers.length; i++) {
      const w = workers[i];
      if (!w.ready) continue;
      if (w.jobs === 0) return i;
      if (w.serialJobs > policy.prefetch) continue;
      if (best === -1) {
        best = i;
        continue;
      }
      const b = workers[best];
      // A free lane first (it starts now, not after the solve before it), then the least cost.
      if ((w.serialJobs === 0) !== (b.serialJobs === 0) ? w.serialJobs === 0 : w.cost < b.cost) best = i;
    }
    return best;
  }
  for (let i = 0; i < workers.length; i++) {
    const w = workers[i];
    if (!w.ready) continue;
    if (w.jobs > 0 && w.rows + req.rows > 2 * policy.maxRows) continue;
    if (best === -1 || w.rows < workers[best].rows) best = i;
  }
  return best;
}
