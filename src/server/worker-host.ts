// One solver worker's state and its side of the protocol (protocol.ts): the DeqModels it loaded
// (three ONNX sessions each), each model's executor from that model's batching mode
// (runtime/executor.ts: SerialExecutor when off, Scheduler when on or static), the requests in
// flight and the batching statistics.
// One road for every request: slice, submit, answer (worker-jobs.ts). worker.ts is the thread
// entry that constructs one.
import { DeqError, isDeqError, type ErrorCode } from '../errors.js';
import { DeqModel, Scheduler, SerialExecutor, SerialLane, TurnGate, type Executor, type ExecutionProvider, type IterationHook } from '../runtime/index.js';
import type { SolverKernel } from '../solver/index.js';
import type { FromWorker, InferJob, IterationEvent, SerializedError, ToWorker, WorkerInit } from './protocol.js';
import { runJob } from './worker-jobs.js';

/** Batching statistics are reported this often, ms. */
const STATS_MS = 200;

interface BatchingStats {
  rows: number[];
  joins: number[];
  leaves: number[];
  positions: number;
  padPositions: number;
}

function serialize(err: unknown, fallback: ErrorCode = 'DEQ_ERR_INTERNAL'): SerializedError {
  if (isDeqError(err)) return { code: err.code, message: err.message };
  return { code: fallback, message: err instanceof Error ? err.message : String(err) };
}

/** A worker's models and executors; it answers the pool's messages through `post`. */
export class WorkerHost {
  readonly #init: WorkerInit;
  readonly #post: (msg: FromWorker) => void;
  readonly #models = new Map<string, DeqModel>();
  /** Each model's executor. */
  readonly #executors = new Map<string, Executor>();
  /**
   * The models with batching off take turns on one lane (one of their solves at a time). Beside it,
   * the schedulers of the models with batching on run as they would alone: the lane's solve and
   * their cell runs interleave on this thread, one native run at a time.
   */
  readonly #lane = new SerialLane();
  /** One gate for all of this worker's schedulers: models take turns at cell runs, the one whose rows need the fewest iterations first. */
  readonly #gate = new TurnGate();
  /** Pool request id → its executor and the executor's ids of its slices. */
  readonly #submitted = new Map<number, { exec: Executor; ids: number[] }>();
  /** Batching statistics since the last report, per model; flushed every STATS_MS. */
  readonly #stats = new Map<string, BatchingStats>();

  constructor(init: WorkerInit, post: (msg: FromWorker) => void) {
    this.#init = init;
    this.#post = post;
    setInterval(() => this.#flushStats(), STATS_MS).unref();
  }

  /** Loads every model, warms it up and gives it its executor; then posts 'ready' (or 'fatal', with nothing left open). */
  async start(): Promise<void> {
    const init = this.#init;
    const loaded: { name: string; provider: string; fallbacks: string[]; solverKernel: string; warmupMs: number }[] = [];
    try {
      for (const { name, dir } of init.models) {
        const model = await DeqModel.load(dir, {
          providers: init.providers as ExecutionProvider[],
          intraOpThreads: init.intraOpThreads,
          interOpThreads: 1,
          cpuMemArena: init.ortMemArena,
          memPattern: init.ortMemPattern,
        }, {
          // `auto` keeps the model's own kernel (its manifest's solver.precision).
          solverKernel: init.solverKernel === 'auto' ? undefined : init.solverKernel as SolverKernel,
        });
        this.#models.set(name, model);
        const b = init.batching;
        const mode = init.modelBatching[name] ?? b.mode;
        // Before the model serves anything; with batching, every cell shape a batched solve can take.
        const warm = await model.warmUp({ maxRows: mode !== 'off' ? b.maxRows : undefined, maxRowsPerRun: init.maxRowsPerRun });
        loaded.push({ name, provider: model.provider, fallbacks: [...model.providerFallbacks], solverKernel: model.solverKernel, warmupMs: warm.solveMs });
        this.#executors.set(name, mode === 'off'
          ? new SerialExecutor(model, this.#lane)
          : new Scheduler(model, { mode, maxRows: b.maxRows, maxQueueDelayMs: b.maxQueueDelayMs, requestShare: b.requestShare, gate: this.#gate }, {
            onRun: (rows, positions, padPositions) => {
              const s = this.#statsOf(name);
              s.rows.push(rows);
              s.positions += positions;
              s.padPositions += padPositions;
            },
            onSolveEnd: (joins, leaves) => { const s = this.#statsOf(name); s.joins.push(joins); s.leaves.push(leaves); },
          }));
      }
    } catch (err) {
      await Promise.allSettled([...this.#models.values()].map((m) => m.release()));
      this.#post({ type: 'fatal', error: serialize(err, 'DEQ_ERR_BUNDLE_INVALID') });
      return;
    }
    this.#post({ type: 'ready', models: loaded });
  }

  /** One message from the pool. */
  handle(msg: ToWorker): void {
    if (msg.type === 'infer') {
      this.#execute(msg.id, msg.model, msg.job);
    } else if (msg.type === 'abort') {
      for (const e of this.#executors.values()) e.abortAll();
    } else if (msg.type === 'cancel') {
      const at = this.#submitted.get(msg.id);
      if (at) for (const id of at.ids) at.exec.cancel(id);
    } else if (msg.type === 'crash') {
      // NOTE: Worker.terminate() during a native ORT run aborts the whole process
      // (Napi::Error in a dying env), so a crash is simulated from JS instead.
      setImmediate(() => { throw new Error('simulated worker crash (test hook)'); });
    } else if (msg.type === 'release') {
      Promise.allSettled([...this.#models.values()].map((m) => m.release())).then(() => {
        this.#models.clear();
        this.#post({ type: 'released' });
      });
    }
  }

  /** A request from the pool: its slices go to its model's executor; the answer is posted when the last one ends. */
  #execute(id: number, name: string, job: InferJob): void {
    const exec = this.#executors.get(name);
    if (!exec) {
      this.#post({ type: 'error', id, error: serialize(new DeqError('DEQ_ERR_MODEL_NOT_FOUND', `model ${name} is not loaded in this worker`)) });
      return;
    }
    runJob(exec, job, this.#init.maxRowsPerRun, this.#progress(id, job), (ids) => this.#submitted.set(id, { exec, ids })).then(
      (r) => this.#post({ type: 'result', id, reply: r }),
      (err: unknown) => this.#post({ type: 'error', id, error: serialize(err) }),
    ).finally(() => this.#submitted.delete(id));
  }

  /**
   * A streamed job's iteration hook: the samples of one iteration (reported together,
   * synchronously) go out as one 'progress' message. `offset`: the first sample of a slice.
   */
  #progress(id: number, job: InferJob): ((offset: number) => IterationHook) | undefined {
    if (!job.stream) return undefined;
    let pending: IterationEvent[] = [];
    const flush = () => {
      this.#post({ type: 'progress', id, events: pending });
      pending = [];
    };
    return (offset) => (sample, iteration, residual, label, top) => {
      if (pending.length === 0) queueMicrotask(flush);
      pending.push({
        sample: offset + sample, iteration, residual: Number.isFinite(residual) ? residual : null,
        ...(label >= 0 ? { top1: label } : {}),
        ...(top ? { top_k: Array.from(top.classes, (index, k) => ({ index, probability: top.probabilities[k] })) } : {}),
      });
    };
  }

  #statsOf(model: string): BatchingStats {
    let s = this.#stats.get(model);
    if (!s) this.#stats.set(model, (s = { rows: [], joins: [], leaves: [], positions: 0, padPositions: 0 }));
    return s;
  }

  #flushStats(): void {
    for (const [model, s] of this.#stats) if (s.rows.length || s.joins.length) this.#post({ type: 'stats', model, ...s });
    this.#stats.clear();
  }
}
