// The worker pool: a fixed set of solver workers (worker-handle.ts) fed from one bounded FIFO
// queue per model (model-queues.ts), each request placed by the pure dispatch policy
// (dispatch.ts) by its model's batching mode. This file wires them: it moves requests on events (a
// submit, a reply, a worker ready or gone), answers their promises, and shuts down in one routine
// close() and abortAll() share.
import { EventEmitter } from 'node:events';
import { DeqError } from '../errors.js';
import { batchingOf, type BatchingSetting } from './config.js';
import { pickWorker, type DispatchPolicy } from './dispatch.js';
import { ModelQueues } from './model-queues.js';
import { resolvePoolSettings, workerInit, type PoolLogger, type PoolOptions, type PoolSettings } from './pool-options.js';
import type { InferJob, InferReply, IterationEvent } from './protocol.js';
import { RespawnPolicy, WorkerHandle, type ModelReport, type ReplyMessage, type WorkerListener } from './worker-handle.js';

export { POOL_SETTINGS, poolSettings, type PoolLogger, type PoolOptions, type PoolSettings } from './pool-options.js';

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
  /** InferJob.deadline, for the queue's timer. */
  deadline: number;
  /** Admission cost (InferJob.cost). */
  cost: number;
  enqueuedAt: number;
  dispatchedAt?: number;
  resolve: (r: PoolResult) => void;
  reject: (e: Error) => void;
  /** A streamed job (InferJob.stream): its iterations as the worker reports them. */
  onProgress?: (events: IterationEvent[]) => void;
  /** Told to stop at its next iteration because the server is shutting down. */
  aborted?: boolean;
}

type Handle = WorkerHandle<Pending>;

const silent: PoolLogger = { info() {}, warn() {}, error() {} };
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
  readonly #settings: Readonly<PoolSettings>;
  readonly #modelBudgets: Readonly<Record<string, number>>;
  readonly #models: PoolOptions['models'];
  /** Where worker start/exit events are logged; settable once the server's logger exists. */
  logger: PoolLogger;
  /** Every worker thread not yet exited, including those close() left running a native call. */
  readonly #workers: Handle[] = [];
  readonly #queues: ModelQueues<Pending>;
  readonly #policy: DispatchPolicy;
  readonly #respawns = new RespawnPolicy();
  /** The models with batching off (their requests run one at a time per worker: dispatch.ts). */
  readonly #serial: ReadonlySet<string>;
  /** Per model, the cost of its requests on the workers now (fair share: dispatch.ts). */
  readonly #modelCost = new Map<string, number>();
  #nextId = 1;
  #nextIndex = 0;
  #started = false;
  #closing = false;
  /**
   * `enqueue` (model) when a request waits for a worker, `dispatch` (model) when one is
   * sent to a worker, `batch` (BatchStats) as workers report batching. For metrics and
   * tests that order themselves by events, not sleeps; free when nobody listens.
   */
  readonly events = new EventEmitter();
  /** 'idle' when a worker's last request leaves it, or a worker exits: what settle and close wait on. */
  readonly #idleEvents = new EventEmitter();
  /** Provider and warm-up time per model, from the first worker to load, and the model's batching mode. */
  modelInfo: Map<string, { provider: string; fallbacks: string[]; solverKernel: string; warmupMs: number; batching: BatchingSetting }> = new Map();
  /** Where a queue's head goes now (ModelQueues.take). */
  readonly #place = (p: Pending): Handle | undefined => this.#workerFor(p.model, p.job.batch, p.cost);
  readonly #listener: WorkerListener<Pending> = {
    reply: (w, msg) => this.#onReply(w, msg),
    progress: (w, msg) => w.inflight.get(msg.id)?.onProgress?.(msg.events),
    stats: (msg) => this.events.emit('batch', { model: msg.model, rows: msg.rows, joins: msg.joins, leaves: msg.leaves, positions: msg.positions, padPositions: msg.padPositions } satisfies BatchStats),
    error: (w, err) => this.logger.error({ worker: w.index, err: { message: err.message } }, 'solver worker error'),
    exit: (w, code) => this.#onExit(w, code),
  };

  constructor(opts: PoolOptions) {
    this.#settings = resolvePoolSettings(opts);
    this.#modelBudgets = opts.modelBudgets ?? {};
    this.#models = opts.models;
    this.logger = opts.logger ?? silent;
    const s = this.#settings;
    this.#queues = new ModelQueues<Pending>({
      models: opts.models.map((m) => m.name), queueSize: s.queueSize, retryAfterS: s.retryAfterS,
      onExpire: (p) => p.reject(new DeqError('DEQ_ERR_DEADLINE_EXCEEDED', `the deadline passed after ${Math.round(performance.now() - p.enqueuedAt)} ms in the queue, before a worker was free`)),
    });
    this.#policy = { prefetch: OFF_PREFETCH, maxRows: s.batchRows, models: this.#queues.models };
    this.#serial = new Set(opts.models.map((m) => m.name).filter((m) => batchingOf(s, m) === 'off'));
    for (const m of opts.models) this.#modelCost.set(m.name, 0);
  }

  /** Starts every worker; resolves once each has loaded and warmed up every model. */
  async start(): Promise<void> {
    try {
      await Promise.all(Array.from({ length: this.#settings.workers }, () => this.#spawn()));
    } catch (err) {
      await Promise.allSettled(this.#workers.map((w) => w.terminate()));
      throw err;
    }
    this.#started = true;
  }

  /** True once started, while not closing, with at least one live worker. */
  get ready(): boolean {
    return this.#started && !this.#closing && this.#workers.some((w) => w.ready);
  }

  /** Requests waiting: in the queue, or (a model with batching off) held by a busy worker for after its current one. */
  queued(model?: string): number {
    return this.#queues.length(model) + this.#onWorkers(model, true);
  }

  /** Requests a worker is running now (queued and held ones not counted). */
  inFlight(model?: string): number {
    return this.#onWorkers(model, false);
  }

  /**
   * Queues a solve. Rejects with DEQ_ERR_QUEUE_FULL when the model's queue is
   * full, DEQ_ERR_DEADLINE_EXCEEDED when the deadline passes before a worker is
   * free, DEQ_ERR_WORKER_FAILED when the worker dies during the solve.
   * The job's typed arrays are transferred to the worker (unusable afterwards).
   * Aborting `signal` (the client went away) cancels it: DEQ_ERR_CANCELLED.
   */
  submit(model: string, job: InferJob, signal?: AbortSignal, onProgress?: (events: IterationEvent[]) => void): Promise<PoolResult> {
    if (!this.#queues.has(model)) return Promise.reject(new DeqError('DEQ_ERR_MODEL_NOT_FOUND', `no model named ${model}`));
    if (this.#closing) return Promise.reject(new DeqError('DEQ_ERR_SHUTTING_DOWN', 'the server is shutting down'));
    const cost = job.cost ?? job.batch * job.solver.maxIter;
    // FIFO per model: while its queue holds requests, a new one waits behind them.
    const worker = this.#queues.length(model) === 0 ? this.#workerFor(model, job.batch, cost) : undefined;
    // A job a busy worker would only hold waits like a queued one, and counts against the queue.
    const waits = !worker || worker.holds(model);
    const full = waits ? this.#queues.refusal(model, this.#onWorkers(model, true)) : undefined;
    if (full) return Promise.reject(full);
    return new Promise<PoolResult>((resolve, reject) => {
      const p: Pending = { id: this.#nextId++, model, job, deadline: job.deadline, cost, enqueuedAt: performance.now(), resolve, reject, onProgress };
      signal?.addEventListener('abort', () => this.cancel(p.id), { once: true });
      if (waits) this.events.emit('enqueue', model);
      if (worker) this.#send(worker, p);
      else this.#queues.push(p);
    });
  }

  /**
   * Stops taking work and fails whatever is still queued. Busy workers are told
   * to stop their solve at the next iteration and given `timeoutMs` to answer;
   * then each releases its sessions and is terminated. A worker still inside a
   * native run is left to finish (unref'd): terminating it mid-run aborts the
   * process. Call after HTTP has drained.
   */
  async close(timeoutMs = 2000): Promise<void> {
    const busy = this.#shutDown();
    await Promise.all(busy.map((w) => this.#when(() => w.jobs === 0, timeoutMs)));
    const idle = this.#workers.filter((w) => w.jobs === 0);
    for (const w of this.#workers) if (w.jobs > 0) w.unref();
    await Promise.all(idle.map((w) => w.release(timeoutMs)));
    await Promise.allSettled(idle.map((w) => w.terminate()));
  }

  /**
   * Shutdown past its grace period: fails every queued request with
   * DEQ_ERR_SHUTTING_DOWN and tells running solves to stop at their next
   * iteration (they then fail with DEQ_ERR_SHUTTING_DOWN too), so each gets a
   * 503 rather than a reset connection. Keeps the pool usable for nothing new.
   */
  abortAll(): void {
    this.#shutDown();
  }

  /**
   * Resolves once no worker is inside a solve (or after `timeoutMs`; false then).
   * Exiting the process while a worker is in a native ONNX Runtime call aborts
   * it (exit 134, "terminate called after throwing Napi::Error"), so every exit waits here.
   */
  settle(timeoutMs: number): Promise<boolean> {
    return this.#when(() => !this.#workers.some((w) => w.jobs > 0), timeoutMs);
  }

  /**
   * The client of request `id` went away: a queued request leaves the queue, a running
   * one stops at its next iteration (batching: its rows are freed; off: the solve ends there).
   * Resolves nothing: the request's promise is rejected with DEQ_ERR_CANCELLED.
   */
  cancel(id: number): void {
    const p = this.#queues.remove(id);
    if (p) {
      p.reject(new DeqError('DEQ_ERR_CANCELLED', 'the client went away while the request was queued'));
      return;
    }
    for (const w of this.#workers) if (w.inflight.has(id)) w.cancel(id);
  }

  /** @internal Test hook: makes every busy worker crash. Returns how many. */
  crashBusyWorkers(): number {
    const busy = this.#workers.filter((w) => w.jobs > 0);
    for (const w of busy) w.crash();
    return busy.length;
  }

  // Requests on the workers for `model` (undefined: every model): running, or (`held`) only held.
  #onWorkers(model: string | undefined, held: boolean): number {
    let n = 0;
    for (const w of this.#workers) n += w.count(model, held);
    return n;
  }

  // The one shutdown step: no new work, queued requests fail, running solves are told to stop at
  // their next iteration. Returns the workers that were busy.
  #shutDown(): Handle[] {
    this.#closing = true;
    for (const p of this.#queues.drain()) p.reject(new DeqError('DEQ_ERR_SHUTTING_DOWN', 'the server shut down before this request reached a worker'));
    const busy = this.#workers.filter((w) => w.jobs > 0);
    for (const w of busy) {
      for (const p of w.inflight.values()) p.aborted = true;
      w.abort();
    }
    return busy;
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

  // After the turn in which the answers that made it idle go out (an exit waits on 'idle': the
  // 503 to a request a shutdown stopped must be written first).
  #emitIdle(): void {
    setImmediate(() => this.#idleEvents.emit('idle'));
  }

  // The worker a request goes to now, or none (it waits in its queue): dispatch.ts decides.
  #workerFor(model: string, rows: number, cost: number): Handle | undefined {
    const i = pickWorker(this.#workers, { serial: this.#serial.has(model), rows, cost, modelCost: this.#modelCost.get(model)!, modelBudget: this.#modelBudgets[model] ?? Infinity }, this.#policy);
    return i === -1 ? undefined : this.#workers[i];
  }

  #spawn(): Promise<void> {
    const w: Handle = new WorkerHandle(this.#nextIndex++, workerInit(this.#models, this.#settings), this.#listener);
    this.#workers.push(w);
    return w.started.then((models) => this.#onReady(w, models));
  }

  #onReady(w: Handle, models: ModelReport[]): void {
    this.#respawns.started();
    for (const m of models) if (!this.modelInfo.has(m.name)) this.modelInfo.set(m.name, { provider: m.provider, fallbacks: m.fallbacks, solverKernel: m.solverKernel, warmupMs: m.warmupMs, batching: batchingOf(this.#settings, m.name) });
    this.logger.info({ worker: w.index, models }, 'solver worker ready');
    this.#pump();
  }

  #onExit(w: Handle, code: number): void {
    const i = this.#workers.indexOf(w);
    if (i !== -1) this.#workers.splice(i, 1);
    this.#emitIdle();
    // Only the requests on this worker fail; the queue goes to the replacement. Of the models with
    // batching off it ran the oldest job only: those it held go back to the front of their queues.
    const held = this.#closing ? [] : w.held();
    const lost = [...w.inflight.values()].filter((p) => !held.includes(p));
    for (const p of [...lost, ...held]) this.#leave(w, p);
    if (held.length) {
      for (const p of held) p.dispatchedAt = undefined;
      this.#queues.requeue(held);
      this.#pump();
    }
    for (const p of lost) {
      p.reject(this.#closing
        ? new DeqError('DEQ_ERR_SHUTTING_DOWN', 'the server shut down before this request finished')
        : new DeqError('DEQ_ERR_WORKER_FAILED', 'the solver worker stopped while running this request; it is being restarted'));
    }
    if (this.#closing || !this.#started || !w.ready) return;
    this.logger.warn({ worker: w.index, exitCode: code }, 'solver worker exited; starting a replacement');
    this.#respawns.replace(
      () => this.#spawn(),
      (err, failures) => this.logger.error({ err: { message: err.message }, failures }, 'replacement solver worker failed to start'),
      () => this.#closing,
    );
  }

  #onReply(w: Handle, msg: ReplyMessage): void {
    const p = w.inflight.get(msg.id);
    if (!p) return;
    this.#leave(w, p);
    if (msg.type === 'result' && p.aborted && msg.reply.solver.stopped) p.reject(new DeqError('DEQ_ERR_SHUTTING_DOWN', 'the server shut down during this solve'));
    else if (msg.type === 'result') p.resolve({ ...msg.reply, queueMs: (p.dispatchedAt ?? p.enqueuedAt) - p.enqueuedAt + (msg.reply.queueMs ?? 0) });
    else p.reject(new DeqError(msg.error.code, msg.error.message));
    this.#pump();
  }

  #send(w: Handle, p: Pending): void {
    p.dispatchedAt = performance.now();
    this.#modelCost.set(p.model, this.#modelCost.get(p.model)! + p.cost);
    w.send(p);
    this.events.emit('dispatch', p.model);
  }

  // Sends queued requests to workers while any can go (model-queues.ts take: round-robin
  // across models, each queue's head first).
  #pump(): void {
    for (let next = this.#queues.take(this.#place); next; next = this.#queues.take(this.#place)) this.#send(next[1], next[0]);
  }

  // A request leaves its worker: its rows and cost are free again.
  #leave(w: Handle, p: Pending): void {
    if (!w.remove(p)) return;
    this.#modelCost.set(p.model, this.#modelCost.get(p.model)! - p.cost);
    if (w.jobs === 0) this.#emitIdle();
  }
}
