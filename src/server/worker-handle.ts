// One solver worker thread as the pool sees it: its spawn and start handshake ('ready' or
// 'fatal'), the messages it takes and sends, its exit, and the requests it holds now (their rows
// and cost are what dispatch.ts reads). Which of them it runs and which it only holds depends on
// each model's batching mode. Also the policy for replacing a worker that died.
import { Worker } from 'node:worker_threads';
import { DeqError } from '../errors.js';
import type { WorkerLoad } from './dispatch.js';
import type { FromWorker, InferJob, ToWorker, WorkerInit } from './protocol.js';

/** Where the compiled worker entry lives: beside this file (dist/server/worker.js). */
const WORKER_URL = new URL('./worker.js', import.meta.url);

/** What a worker reports of each model once it has loaded and warmed it up. */
export type ModelReport = Extract<FromWorker, { type: 'ready' }>['models'][number];
export type ReplyMessage = Extract<FromWorker, { type: 'result' | 'error' }>;
export type ProgressMessage = Extract<FromWorker, { type: 'progress' }>;
export type StatsMessage = Extract<FromWorker, { type: 'stats' }>;

/** A request as a worker holds it. */
export interface OnWorker {
  id: number;
  model: string;
  job: InferJob;
  /** Admission cost (InferJob.cost). */
  cost: number;
}

/** What a worker tells its owner once it runs (the start handshake is `WorkerHandle.started`). */
export interface WorkerListener<T extends OnWorker> {
  reply(w: WorkerHandle<T>, msg: ReplyMessage): void;
  progress(w: WorkerHandle<T>, msg: ProgressMessage): void;
  stats(msg: StatsMessage): void;
  error(w: WorkerHandle<T>, err: Error): void;
  exit(w: WorkerHandle<T>, code: number): void;
}

/** One solver worker thread and the requests on it. */
export class WorkerHandle<T extends OnWorker> implements WorkerLoad {
  /** For logs: the how-manyth worker its pool started. */
  readonly index: number;
  /** True once it has loaded and warmed up every model. */
  ready = false;
  /** Requests on it now, oldest first (of the models with batching off: the one it runs, then those it holds). */
  readonly inflight = new Map<number, T>();
  /** Their rows (samples) and admission cost, for dispatch. */
  rows = 0;
  cost = 0;
  /** Of them, requests of the models with batching off (WorkerLoad). */
  serialJobs = 0;
  /** Resolves with its models once it is ready; rejects (DeqError) if it fails to start. */
  readonly started: Promise<ModelReport[]>;
  /**
   * The models with batching off: of their requests it runs the oldest only, and holds the others
   * until that one ends (they share one lane, worker-host.ts); other models' requests run at once.
   */
  readonly #serial: ReadonlySet<string>;
  readonly #worker: Worker;
  #released: (() => void) | undefined;

  constructor(index: number, init: WorkerInit, on: WorkerListener<T>) {
    this.index = index;
    this.#serial = new Set(init.models.map((m) => m.name).filter((m) => (init.modelBatching[m] ?? init.batching.mode) === 'off'));
    this.#worker = new Worker(WORKER_URL, { workerData: init, name: 'deq-solver' });
    this.started = new Promise<ModelReport[]>((resolve, reject) => {
      this.#worker.on('message', (msg: FromWorker) => {
        switch (msg.type) {
          case 'ready':
            this.ready = true;
            resolve(msg.models);
            break;
          case 'fatal':
            reject(new DeqError(msg.error.code, msg.error.message));
            void this.#worker.terminate();
            break;
          case 'result':
          case 'error':
            on.reply(this, msg);
            break;
          case 'progress':
            on.progress(this, msg);
            break;
          case 'stats':
            on.stats(msg);
            break;
          case 'released':
            this.#released?.();
            break;
          default:
            break;
        }
      });
      this.#worker.on('error', (err) => {
        on.error(this, err);
        // Once started, a promise settles only once: this rejects a worker that never was ready.
        reject(new DeqError('DEQ_ERR_WORKER_FAILED', `solver worker failed to start: ${err.message}`));
      });
    });
    this.#worker.on('exit', (code) => on.exit(this, code));
  }

  /** Requests on it now (WorkerLoad). */
  get jobs(): number {
    return this.inflight.size;
  }

  /** A request for `model` sent now would only be held (its model has batching off, and the lane is busy). */
  holds(model: string): boolean {
    return this.serialJobs > 0 && this.#serial.has(model);
  }

  /** Its requests for `model` (undefined: every model) that it runs now, or (`held`) that it only holds. */
  count(model: string | undefined, held: boolean): number {
    let n = 0;
    let lane = false;
    for (const p of this.inflight.values()) {
      const serial = this.#serial.has(p.model);
      if ((serial && lane) === held && (model === undefined || p.model === model)) n++;
      lane ||= serial;
    }
    return n;
  }

  /** The requests it only holds, oldest first: those of models with batching off behind the one it runs. */
  held(): T[] {
    const out: T[] = [];
    let lane = false;
    for (const p of this.inflight.values()) {
      if (!this.#serial.has(p.model)) continue;
      if (lane) out.push(p);
      lane = true;
    }
    return out;
  }

  /**
   * Sends `p` to the worker. Its typed arrays are transferred (unusable here afterwards), unless
   * it is only held: then they are copied, so that if the worker dies before starting it, it
   * goes back to its queue with its inputs intact.
   */
  send(p: T): void {
    const hold = this.holds(p.model);
    this.inflight.set(p.id, p);
    this.rows += p.job.batch;
    this.cost += p.cost;
    if (this.#serial.has(p.model)) this.serialJobs++;
    const { job } = p;
    const transfer: ArrayBuffer[] = [];
    if (!hold) {
      const arrays = [...(job.input ? [job.input] : []), ...Object.values(job.inputs ?? {}), ...Object.values(job.headInputs ?? {}), ...(job.z0 ? [job.z0] : [])];
      for (const v of arrays) if (!transfer.includes(v.buffer as ArrayBuffer)) transfer.push(v.buffer as ArrayBuffer);
    }
    this.#worker.postMessage({ type: 'infer', id: p.id, model: p.model, job } satisfies ToWorker, transfer);
  }

  /** `p` leaves this worker (answered or lost): its rows and cost are free again. False if it was not here. */
  remove(p: T): boolean {
    if (!this.inflight.delete(p.id)) return false;
    this.rows -= p.job.batch;
    this.cost -= p.cost;
    if (this.#serial.has(p.model)) this.serialJobs--;
    return true;
  }

  /** Every running solve stops at its next iteration. */
  abort(): void {
    this.#post({ type: 'abort' });
  }

  /** Request `id` stops at its next iteration (its client went away). */
  cancel(id: number): void {
    this.#post({ type: 'cancel', id });
  }

  /** Test hook: the worker fails as a bug in it would. */
  crash(): void {
    this.#post({ type: 'crash' });
  }

  /** Releases its sessions; resolves when it says so, or after `timeoutMs`. */
  release(timeoutMs: number): Promise<void> {
    if (!this.ready) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      timer.unref();
      this.#released = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#post({ type: 'release' });
    });
  }

  terminate(): Promise<number> {
    return this.#worker.terminate();
  }

  /** Lets the process exit while this worker still runs (one inside a native run is never terminated). */
  unref(): void {
    this.#worker.unref();
  }

  #post(msg: ToWorker): void {
    this.#worker.postMessage(msg);
  }
}

/**
 * When a dead worker's replacement is started again after failing to start: after `retryMs`,
 * until `maxFailures` in a row have failed. Any worker that starts resets the count.
 */
export class RespawnPolicy {
  readonly #maxFailures: number;
  readonly #retryMs: number;
  #failures = 0;

  constructor(maxFailures = 5, retryMs = 1000) {
    this.#maxFailures = maxFailures;
    this.#retryMs = retryMs;
  }

  /** A worker started: failures in a row count from zero again. */
  started(): void {
    this.#failures = 0;
  }

  /**
   * Starts a replacement with `spawn`; while it fails, tries again under the policy. `onFailure`
   * hears each failure with the count in a row; `stopped()` true (shutdown) ends the retries.
   */
  replace(spawn: () => Promise<unknown>, onFailure: (err: Error, failures: number) => void, stopped: () => boolean): void {
    spawn().catch((err: Error) => {
      this.#failures++;
      onFailure(err, this.#failures);
      if (this.#failures < this.#maxFailures && !stopped()) setTimeout(() => this.replace(spawn, onFailure, stopped), this.#retryMs).unref();
    });
  }
}
