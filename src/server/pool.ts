import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import { DeqError } from '../errors.js';
import type { SolverKernel } from '../solver/index.js';
import { DEFAULT_CONFIG } from './config.js';
import { pickWorker } from './dispatch.js';
import type { BatchingConfig, FromWorker, InferJob, InferReply, IterationEvent, ToWorker, WorkerInit } from './protocol.js';

/** Where the compiled worker entry lives: beside this file (dist/server/worker.js). */
const WORKER_URL = new URL('./worker.js', import.meta.url);

export interface PoolLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface PoolOptions {
  models: { name: string; dir: string }[];
  workers: number;
  providers: readonly string[];
  intraOpThreads: number;
  /** ONNX Runtime CPU arena and memory patterns: the settings of the same names (defaults from DEFAULT_CONFIG). */
  ortMemArena?: boolean;
  ortMemPattern?: boolean;
  /** Solver kernel every worker's models use; `auto` (the default): each model's own (DeqModel.solverKernel). */
  solverKernel?: SolverKernel | 'auto';
  /** Largest batch × sequence length per native run: --max-rows-per-run (default from DEFAULT_CONFIG). Not batching.maxRows, the rows of a batched cell run. */
  maxRowsPerRun?: number;
  /** Requests allowed to wait per model; one more is refused with DEQ_ERR_QUEUE_FULL. */
  queueSize: number;
  /**
   * `off`: a worker solves one request at a time. `continuous` / `static`: a worker
   * takes several and batches their solver iterations (runtime/scheduler.ts).
   */
  batching?: BatchingConfig;
  retryAfterS?: number;
  logger?: PoolLogger;
  /** Per model, the cost its requests together may have on the workers (admission.ts modelBudget); default: no limit. */
  modelBudgets?: Record<string, number>;
}

export interface PoolResult extends InferReply {
  /** Time spent waiting: for a worker, then (batching) for a place in a solve. */
  queueMs: number;
  /** Answered from the fixed-point response cache: no solve ran (server/response-cache.ts). */
  cached?: boolean;
  /** The solve started from a given initial state (InferJob.z0). */
  warmStart?: boolean;
}

/** Batching statistics from the workers, for metrics. */
export interface BatchStats {
  model: string;
  /** Rows per cell run, one value per run. */
  rows: number[];
  /** Per ended solve: rows that joined after it started, rows that left while others ran on. */
  joins: number[];
  leaves: number[];
  /** Padded models (state.pad): sequence positions evaluated by cell runs, padding included, and the padding among them. */
  positions: number;
  padPositions: number;
}

interface Pending {
  id: number;
  model: string;
  job: InferJob;
  enqueuedAt: number;
  timer: NodeJS.Timeout | null;
  resolve: (r: PoolResult) => void;
  reject: (e: Error) => void;
  /** A streamed job (InferJob.stream): its iterations as the worker reports them. */
  onProgress?: (events: IterationEvent[]) => void;
  dispatchedAt?: number;
  /** Told to stop at its next iteration because the server is shutting down. */
  aborted?: boolean;
  /** Admission cost (InferJob.cost). */
  cost: number;
}

interface Slot {
  index: number;
  worker: Worker;
  ready: boolean;
  /** Requests on this worker now, by id. */
  inflight: Map<number, Pending>;
  /** Their rows (samples), for batching dispatch. */
  rows: number;
  /** Their admission cost, for dispatch. */
  cost: number;
}

const silent: PoolLogger = { info() {}, warn() {}, error() {} };
/** Replacement workers that fail to start this many times in a row are not retried. */
const MAX_RESPAWN_FAILURES = 5;
/**
 * Batching off: jobs a busy worker holds besides the one it runs. With one, it starts the next
 * as soon as it ends instead of waiting for the HTTP thread to hear of it and send another: at
 * c=16 one worker sat idle a quarter of the time while requests queued (docs/server.md).
 * A held job still counts as queued (`--queue-size`, metrics) until its worker starts it.
 */
const OFF_PREFETCH = 1;

/**
 * A fixed set of solver workers, each with its own sessions for every model,
 * fed from one bounded FIFO queue per model (served round-robin across models).
 */
export class WorkerPool {
  readonly #opts: PoolOptions;
  /** Where worker start/exit events are logged; settable once the server's logger exists. */
  logger: PoolLogger;
  readonly #slots: Slot[] = [];
  /** Every worker thread not yet exited, including those close() left running a native call. */
  readonly #live = new Set<Slot>();
  readonly #queues = new Map<string, Pending[]>();
  readonly #running = new Map<string, number>();
  /** Per model, the cost of its requests on the workers now (fair share: dispatch.ts). */
  readonly #modelCost = new Map<string, number>();
  #nextId = 1;
  #rr = 0;
  #started = false;
  #closing = false;
  #respawnFailures = 0;
  #nextIndex = 0;
  /**
   * `enqueue` (model) when a request waits for a worker, `dispatch` (model) when one is
   * sent to a worker, `batch` (BatchStats) as workers report batching. For metrics and
   * tests that order themselves by events, not sleeps; free when nobody listens.
   */
  readonly events = new EventEmitter();
  /** 'idle' when a worker's last request leaves it, or a worker exits: what settle and close wait on. */
  readonly #idleEvents = new EventEmitter();
  /** Provider and warm-up time per model, from the first worker to load. */
  modelInfo: Map<string, { provider: string; fallbacks: string[]; solverKernel: string; warmupMs: number }> = new Map();

  constructor(opts: PoolOptions) {
    this.#opts = opts;
    this.logger = opts.logger ?? silent;
    for (const m of opts.models) {
      this.#queues.set(m.name, []);
      this.#running.set(m.name, 0);
      this.#modelCost.set(m.name, 0);
    }
  }

  /** Starts every worker; resolves once each has loaded and warmed up every model. */
  async start(): Promise<void> {
    try {
      await Promise.all(Array.from({ length: this.#opts.workers }, () => this.#spawn()));
    } catch (err) {
      await this.#terminateAll();
      throw err;
    }
    this.#started = true;
  }

  /** True once started, while not closing, with at least one live worker. */
  get ready(): boolean {
    return this.#started && !this.#closing && this.#slots.some((s) => s.ready);
  }

  /** Requests waiting: in the queue, or (batching off) held by a busy worker for after its current one. */
  queued(model?: string): number {
    let n = 0;
    for (const [name, q] of this.#queues) if (model === undefined || name === model) n += q.length;
    if (this.#off) {
      for (const s of this.#slots) {
        let first = true;
        for (const p of s.inflight.values()) {
          if (!first && (model === undefined || p.model === model)) n++;
          first = false;
        }
      }
    }
    return n;
  }

  get #off(): boolean {
    return !this.#opts.batching || this.#opts.batching.mode === 'off';
  }

  /** Requests a worker is running now (queued and held ones not counted). */
  inFlight(model?: string): number {
    if (model !== undefined) return (this.#running.get(model) ?? 0) - this.queued(model);
    let n = 0;
    for (const v of this.#running.values()) n += v;
    return n - this.queued();
  }

  /**
   * Queues a solve. Rejects with DEQ_ERR_QUEUE_FULL when the model's queue is
   * full, DEQ_ERR_DEADLINE_EXCEEDED when the deadline passes before a worker is
   * free, DEQ_ERR_WORKER_FAILED when the worker dies during the solve.
   * The job's typed arrays are transferred to the worker (unusable afterwards).
   * Aborting `signal` (the client went away) cancels it: DEQ_ERR_CANCELLED.
   */
  submit(model: string, job: InferJob, signal?: AbortSignal, onProgress?: (events: IterationEvent[]) => void): Promise<PoolResult> {
    const queue = this.#queues.get(model);
    if (!queue) return Promise.reject(new DeqError('DEQ_ERR_MODEL_NOT_FOUND', `no model named ${model}`));
    if (this.#closing) return Promise.reject(new DeqError('DEQ_ERR_SHUTTING_DOWN', 'the server is shutting down'));
    const cost = job.cost ?? job.batch * job.solver.maxIter;
    // FIFO per model: while its queue holds requests, a new one waits behind them.
    const slot = queue.length === 0 ? this.#slotFor(model, job.batch, cost) : undefined;
    // A job a busy worker would only hold waits like a queued one, and counts against the queue.
    const waits = !slot || (this.#off && slot.inflight.size > 0);
    if (waits && this.queued(model) >= this.#opts.queueSize) {
      return Promise.reject(new DeqError('DEQ_ERR_QUEUE_FULL', `the queue for ${model} is full (${this.#opts.queueSize} waiting); retry later`,
        { retryAfterS: this.#opts.retryAfterS ?? 1 }));
    }
    return new Promise<PoolResult>((resolve, reject) => {
      const p: Pending = { id: this.#nextId++, model, job, cost, enqueuedAt: performance.now(), timer: null, resolve, reject, onProgress };
      this.#running.set(model, this.#running.get(model)! + 1);
      signal?.addEventListener('abort', () => this.cancel(p.id), { once: true });
      if (waits) this.events.emit('enqueue', model);
      if (slot) {
        this.#send(slot, p);
        return;
      }
      queue.push(p);
      this.#armDeadline(p, queue);
    });
  }

  // A queued request fails at its deadline if no worker has taken it by then. (One a worker
  // holds is timed by the worker, which knows whether it has started it.)
  #armDeadline(p: Pending, queue: Pending[]): void {
    p.timer = setTimeout(() => {
      const i = queue.indexOf(p);
      if (i === -1) return;
      queue.splice(i, 1);
      this.#finish(p);
      p.reject(new DeqError('DEQ_ERR_DEADLINE_EXCEEDED', `the deadline passed after ${Math.round(performance.now() - p.enqueuedAt)} ms in the queue, before a worker was free`));
    }, Math.max(0, p.job.deadline - Date.now()));
    p.timer.unref();
  }

  /**
   * Stops taking work and fails whatever is still queued. Busy workers are told
   * to stop their solve at the next iteration and given `timeoutMs` to answer;
   * then each releases its sessions and is terminated. A worker still inside a
   * native run is left to finish (unref'd): terminating it mid-run aborts the
   * process. Call after HTTP has drained.
   */
  async close(timeoutMs = 2000): Promise<void> {
    this.#closing = true;
    for (const q of this.#queues.values()) {
      for (const p of q.splice(0)) {
        this.#finish(p);
        p.reject(new DeqError('DEQ_ERR_SHUTTING_DOWN', 'the server shut down before this request reached a worker'));
      }
    }
    const busy = this.#slots.filter((s) => s.inflight.size > 0);
    for (const s of busy) {
      for (const p of s.inflight.values()) p.aborted = true;
      s.worker.postMessage({ type: 'abort' } satisfies ToWorker);
    }
    await Promise.all(busy.map((s) => this.#idle(s, timeoutMs)));
    const idle = this.#slots.filter((s) => s.inflight.size === 0);
    for (const s of this.#slots) if (s.inflight.size > 0) s.worker.unref();
    await Promise.all(idle.map((s) => this.#release(s, timeoutMs)));
    this.#slots.splice(0);
    await Promise.allSettled(idle.map((s) => s.worker.terminate()));
  }

  /**
   * Shutdown past its grace period: fails every queued request with
   * DEQ_ERR_SHUTTING_DOWN and tells running solves to stop at their next
   * iteration (they then fail with DEQ_ERR_SHUTTING_DOWN too), so each gets a
   * 503 rather than a reset connection. Keeps the pool usable for nothing new.
   */
  abortAll(): void {
    this.#closing = true;
    for (const q of this.#queues.values()) {
      for (const p of q.splice(0)) {
        this.#finish(p);
        p.reject(new DeqError('DEQ_ERR_SHUTTING_DOWN', 'the server shut down before this request reached a worker'));
      }
    }
    for (const s of this.#live) {
      if (s.inflight.size > 0) {
        for (const p of s.inflight.values()) p.aborted = true;
        s.worker.postMessage({ type: 'abort' } satisfies ToWorker);
      }
    }
  }

  /**
   * Resolves once no worker is inside a solve (or after `timeoutMs`; false then).
   * Exiting the process while a worker is in a native ONNX Runtime call aborts
   * it (exit 134, "terminate called after throwing Napi::Error"), so every exit waits here.
   */
  settle(timeoutMs: number): Promise<boolean> {
    return this.#when(() => ![...this.#live].some((s) => s.inflight.size > 0), timeoutMs);
  }

  /**
   * The client of request `id` went away: a queued request leaves the queue, a running
   * one stops at its next iteration (batching: its rows are freed; off: the solve ends there).
   * Resolves nothing: the request's promise is rejected with DEQ_ERR_CANCELLED.
   */
  cancel(id: number): void {
    for (const q of this.#queues.values()) {
      const i = q.findIndex((p) => p.id === id);
      if (i === -1) continue;
      const [p] = q.splice(i, 1);
      this.#finish(p);
      p.reject(new DeqError('DEQ_ERR_CANCELLED', 'the client went away while the request was queued'));
      return;
    }
    for (const s of this.#slots) if (s.inflight.has(id)) s.worker.postMessage({ type: 'cancel', id } satisfies ToWorker);
  }

  /** @internal Test hook: makes every busy worker crash. Returns how many. */
  crashBusyWorkers(): number {
    const busy = this.#slots.filter((s) => s.inflight.size > 0);
    for (const s of busy) s.worker.postMessage({ type: 'crash' } satisfies ToWorker);
    return busy.length;
  }

  async #idle(slot: Slot, timeoutMs: number): Promise<void> {
    await this.#when(() => slot.inflight.size === 0, timeoutMs);
  }

  // Resolves true once `cond` holds, checked each time a worker becomes idle or exits (no
  // polling), or false after `timeoutMs`.
  #when(cond: () => boolean, timeoutMs: number): Promise<boolean> {
    if (cond()) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.#idleEvents.off('idle', check);
        resolve(ok);
      };
      const check = () => { if (cond()) done(true); };
      const timer = setTimeout(() => done(cond()), timeoutMs);
      timer.unref();
      this.#idleEvents.on('idle', check);
    });
  }

  // The worker a request goes to now, or none (it waits in its queue): dispatch.ts decides.
  #slotFor(model: string, rows: number, cost: number): Slot | undefined {
    const b = this.#opts.batching;
    const i = pickWorker(this.#slots.map((s) => ({ ready: s.ready, jobs: s.inflight.size, rows: s.rows, cost: s.cost })), {
      rows, cost, modelCost: this.#modelCost.get(model) ?? 0, modelBudget: this.#opts.modelBudgets?.[model] ?? Infinity,
    }, { batching: !this.#off, prefetch: OFF_PREFETCH, maxRows: b?.maxRows ?? 1, models: this.#queues.size });
    return i === -1 ? undefined : this.#slots[i];
  }

  #spawn(): Promise<void> {
    const init: WorkerInit = {
      models: this.#opts.models,
      providers: [...this.#opts.providers],
      intraOpThreads: this.#opts.intraOpThreads,
      batching: this.#opts.batching ?? { mode: 'off', maxRows: 1, maxQueueDelayMs: 0, requestShare: 1 },
      ortMemArena: this.#opts.ortMemArena ?? DEFAULT_CONFIG.ortMemArena,
      ortMemPattern: this.#opts.ortMemPattern ?? DEFAULT_CONFIG.ortMemPattern,
      solverKernel: this.#opts.solverKernel ?? 'auto',
      maxRowsPerRun: this.#opts.maxRowsPerRun ?? DEFAULT_CONFIG.maxRowsPerRun,
    };
    const worker = new Worker(WORKER_URL, { workerData: init, name: 'deq-solver' });
    const slot: Slot = { index: this.#nextIndex++, worker, ready: false, inflight: new Map(), rows: 0, cost: 0 };
    this.#slots.push(slot);
    this.#live.add(slot);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      worker.on('message', (msg: FromWorker) => {
        switch (msg.type) {
          case 'ready':
            slot.ready = true;
            settled = true;
            this.#respawnFailures = 0;
            for (const m of msg.models) if (!this.modelInfo.has(m.name)) this.modelInfo.set(m.name, { provider: m.provider, fallbacks: m.fallbacks, solverKernel: m.solverKernel, warmupMs: m.warmupMs });
            this.logger.info({ worker: slot.index, models: msg.models }, 'solver worker ready');
            resolve();
            this.#pump();
            break;
          case 'fatal':
            settled = true;
            reject(new DeqError(msg.error.code, msg.error.message));
            void worker.terminate();
            break;
          case 'result':
          case 'error':
            this.#onReply(slot, msg);
            break;
          case 'progress':
            slot.inflight.get(msg.id)?.onProgress?.(msg.events);
            break;
          case 'stats':
            this.events.emit('batch', { model: msg.model, rows: msg.rows, joins: msg.joins, leaves: msg.leaves, positions: msg.positions, padPositions: msg.padPositions } satisfies BatchStats);
            break;
          default:
            break;
        }
      });
      worker.on('error', (err) => {
        this.logger.error({ worker: slot.index, err: { message: err.message } }, 'solver worker error');
        if (!settled) {
          settled = true;
          reject(new DeqError('DEQ_ERR_WORKER_FAILED', `solver worker failed to start: ${err.message}`));
        }
      });
      worker.on('exit', (code) => this.#onExit(slot, code));
    });
  }

  #onExit(slot: Slot, code: number): void {
    this.#live.delete(slot);
    setImmediate(() => this.#idleEvents.emit('idle'));
    const i = this.#slots.indexOf(slot);
    if (i !== -1) this.#slots.splice(i, 1);
    // Only the requests on this worker fail; the queue goes to the replacement. Batching off,
    // the worker ran its oldest job only: those it held go back to the front of their queues.
    const lost = [...slot.inflight.values()];
    if (this.#off && !this.#closing) {
      for (const p of lost.splice(1).reverse()) {
        const queue = this.#queues.get(p.model)!;
        p.dispatchedAt = undefined;
        queue.unshift(p);
        this.#armDeadline(p, queue);
      }
    }
    for (const p of [...slot.inflight.values()]) this.#leave(slot, p);
    for (const p of lost) {
      this.#finish(p);
      p.reject(this.#closing
        ? new DeqError('DEQ_ERR_SHUTTING_DOWN', 'the server shut down before this request finished')
        : new DeqError('DEQ_ERR_WORKER_FAILED', 'the solver worker stopped while running this request; it is being restarted'));
    }
    slot.inflight.clear();
    if (this.#closing || !this.#started || !slot.ready) return;
    this.logger.warn({ worker: slot.index, exitCode: code }, 'solver worker exited; starting a replacement');
    this.#respawn();
  }

  #respawn(): void {
    this.#spawn().catch((err: Error) => {
      this.#respawnFailures++;
      this.logger.error({ err: { message: err.message }, failures: this.#respawnFailures }, 'replacement solver worker failed to start');
      if (this.#respawnFailures < MAX_RESPAWN_FAILURES && !this.#closing) setTimeout(() => this.#respawn(), 1000).unref();
    });
  }

  #onReply(slot: Slot, msg: Extract<FromWorker, { type: 'result' | 'error' }>): void {
    const p = slot.inflight.get(msg.id);
    if (!p) return;
    this.#leave(slot, p);
    this.#finish(p);
    if (msg.type === 'result' && p.aborted && msg.reply.solver.stopped) p.reject(new DeqError('DEQ_ERR_SHUTTING_DOWN', 'the server shut down during this solve'));
    else if (msg.type === 'result') p.resolve({ ...msg.reply, queueMs: (p.dispatchedAt ?? p.enqueuedAt) - p.enqueuedAt + (msg.reply.queueMs ?? 0) });
    else p.reject(new DeqError(msg.error.code, msg.error.message));
    this.#pump();
  }

  #send(slot: Slot, p: Pending): void {
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
    p.dispatchedAt = performance.now();
    // A job the worker only holds is copied, not transferred: if the worker dies before
    // starting it, it goes back to the queue with its inputs intact.
    const held = this.#off && slot.inflight.size > 0;
    slot.inflight.set(p.id, p);
    slot.rows += p.job.batch;
    slot.cost += p.cost;
    this.#modelCost.set(p.model, this.#modelCost.get(p.model)! + p.cost);
    const { job } = p;
    const transfer: ArrayBuffer[] = [];
    const arrays = held ? [] : [...(job.input ? [job.input] : []), ...Object.values(job.inputs ?? {}), ...Object.values(job.headInputs ?? {}), ...(job.z0 ? [job.z0] : [])];
    for (const v of arrays) if (!transfer.includes(v.buffer as ArrayBuffer)) transfer.push(v.buffer as ArrayBuffer);
    const msg: ToWorker = { type: 'infer', id: p.id, model: p.model, job };
    slot.worker.postMessage(msg, transfer);
    this.events.emit('dispatch', p.model);
  }

  // Sends queued requests to workers while any can go: models in round-robin order, each
  // queue's head first, so one model whose head must wait (its budget) does not stop the others.
  #pump(): void {
    const names = [...this.#queues.keys()];
    for (let sent = true; sent;) {
      sent = false;
      for (let k = 0; k < names.length; k++) {
        const at = (this.#rr + k) % names.length;
        const q = this.#queues.get(names[at])!;
        const p = q[0];
        if (!p) continue;
        const slot = this.#slotFor(p.model, p.job.batch, p.cost);
        if (!slot) continue;
        q.shift();
        this.#rr = (at + 1) % names.length;
        this.#send(slot, p);
        sent = true;
        break;
      }
    }
  }

  // A request leaves its worker: its rows and cost are free again.
  #leave(slot: Slot, p: Pending): void {
    if (!slot.inflight.delete(p.id)) return;
    slot.rows -= p.job.batch;
    slot.cost -= p.cost;
    this.#modelCost.set(p.model, this.#modelCost.get(p.model)! - p.cost);
    // After the turn in which its answer goes out (an exit waits on 'idle': the 503 to a request
    // a shutdown stopped must be written first).
    if (slot.inflight.size === 0) setImmediate(() => this.#idleEvents.emit('idle'));
  }

  #finish(p: Pending): void {
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
    this.#running.set(p.model, this.#running.get(p.model)! - 1);
  }

  #release(slot: Slot, timeoutMs: number): Promise<void> {
    if (!slot.ready) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      timer.unref();
      slot.worker.on('message', (msg: FromWorker) => {
        if (msg.type === 'released') {
          clearTimeout(timer);
          resolve();
        }
      });
      slot.worker.postMessage({ type: 'release' } satisfies ToWorker);
    });
  }

  async #terminateAll(): Promise<void> {
    const slots = this.#slots.splice(0);
    await Promise.allSettled(slots.map((s) => s.worker.terminate()));
  }
}
