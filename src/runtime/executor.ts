// The executor contract: how a solve request reaches a model, whatever the batching mode.
// Two implementations: SerialExecutor (batching off: one request at a time, on a lane a worker's
// models share) and Scheduler (runtime/scheduler.ts: continuous or static batching of iterations
// across requests). Deadlines and cancellation live here: a request's deadline and its
// cancellation stop it at the next iteration boundary in either.
import { DeqError } from '../errors.js';
import type { DeqModel, InferRequest, InferResult } from './deq-model.js';

/** A solve request as an executor (serial or scheduler) takes it: the model's InferRequest with its absolute deadline. */
export interface ExecutorRequest extends InferRequest {
  /** Absolute deadline (Date.now() ms): past it, the request stops and is answered from its best iterates, `stopped`. */
  deadline?: number;
}

/** What an executor answers: the model's InferResult and how long the request waited to start. */
export interface ExecutorResult extends InferResult {
  /** From submission to the start of its solve (batching: the admission of its first row). */
  queueMs: number;
}

/** Runs solve requests on one model. */
export interface Executor {
  /** Queues a request; `result` rejects with DEQ_ERR_CANCELLED once `cancel(id)` reaches it. */
  submit(req: ExecutorRequest): { id: number; result: Promise<ExecutorResult> };
  /** The request's client went away: a waiting one fails at once, a running one at its next iteration. */
  cancel(id: number): void;
  /** Shutdown: every running and waiting request stops at its next iteration (answered `stopped`). */
  abortAll(): void;
}

/** The one-at-a-time order a worker's serial executors share (one per model, one lane per worker). */
export class SerialLane {
  tail: Promise<void> = Promise.resolve();
  /** Set by abortAll: running and waiting requests stop at once (their answers are `stopped`). */
  aborted = false;
}

interface Waiting {
  timer: NodeJS.Timeout;
  reject: (e: Error) => void;
}

/**
 * Batching off: requests run one after another on the lane, each a whole solve of its own.
 * Until its turn, a request still fails at its deadline or its cancellation, at once.
 */
export class SerialExecutor implements Executor {
  readonly #model: DeqModel;
  readonly #lane: SerialLane;
  #nextId = 1;
  readonly #waiting = new Map<number, Waiting>();
  /** Running requests, and whether their clients went away. */
  readonly #running = new Map<number, { cancelled: boolean }>();

  constructor(model: DeqModel, lane = new SerialLane()) {
    this.#model = model;
    this.#lane = lane;
  }

  submit(req: ExecutorRequest): { id: number; result: Promise<ExecutorResult> } {
    const id = this.#nextId++;
    const submitted = performance.now();
    const deadline = req.deadline ?? Infinity;
    this.#lane.aborted = false;
    const result = new Promise<ExecutorResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#waiting.delete(id)) reject(new DeqError('DEQ_ERR_DEADLINE_EXCEEDED', 'the deadline passed while the request waited for the solve before it'));
      }, Math.min(2 ** 31 - 1, Math.max(0, deadline - Date.now())));
      this.#waiting.set(id, { timer, reject });
      this.#lane.tail = this.#lane.tail.then(async () => {
        const waiting = this.#waiting.get(id);
        if (!waiting) return; // already answered: expired or cancelled
        this.#waiting.delete(id);
        clearTimeout(waiting.timer);
        const running = { cancelled: false };
        this.#running.set(id, running);
        const queueMs = performance.now() - submitted;
        const lane = this.#lane;
        try {
          // Checked between solver iterations: a native run cannot be interrupted.
          const r = await this.#model.infer({ ...req, solver: { ...req.solver, shouldStop: () => lane.aborted || running.cancelled || Date.now() >= deadline } });
          if (running.cancelled) reject(new DeqError('DEQ_ERR_CANCELLED', 'the client went away during the solve'));
          else resolve({ ...r, queueMs });
        } catch (err) {
          reject(err as Error);
        } finally {
          this.#running.delete(id);
        }
      });
    });
    return { id, result };
  }

  cancel(id: number): void {
    const running = this.#running.get(id);
    if (running) running.cancelled = true;
    const waiting = this.#waiting.get(id);
    if (waiting) {
      this.#waiting.delete(id);
      clearTimeout(waiting.timer);
      waiting.reject(new DeqError('DEQ_ERR_CANCELLED', 'the client went away while the request was queued'));
    }
  }

  abortAll(): void {
    this.#lane.aborted = true;
  }
}
