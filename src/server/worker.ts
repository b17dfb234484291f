// Solver worker: owns one DeqModel (three ONNX sessions) per bundle and runs solves off the
// HTTP thread, each model through its executor (runtime/executor.ts): SerialExecutor with
// batching off, Scheduler with batching on. One road for every request: slice, submit, answer.
// NOTE: onnxruntime-node's session.run() blocks the calling thread (microsoft/onnxruntime#19611),
// hence a thread per worker.
import { parentPort, workerData } from 'node:worker_threads';
import { DeqError, isDeqError, type ErrorCode } from '../errors.js';
import { DeqModel, Scheduler, SerialExecutor, SerialLane, TurnGate, type Executor, type ExecutionProvider, type ExecutorResult } from '../runtime/index.js';
import type { IterationHook } from '../runtime/index.js';
import type { SolverKernel } from '../solver/index.js';
import type { FromWorker, InferJob, InferReply, IterationEvent, SerializedError, ToWorker, WorkerInit } from './protocol.js';

const port = parentPort!;
const init = workerData as WorkerInit;
const models = new Map<string, DeqModel>();
/** Each model's executor. */
const executors = new Map<string, Executor>();
/** Batching off: the models of this worker take turns on one lane (one solve at a time). */
const lane = new SerialLane();
/** One gate for all of this worker's schedulers: models take turns at cell runs, the one whose rows need the fewest iterations first. */
const gate = new TurnGate();
/** Pool request id → its executor and the executor's ids of its slices. */
const submitted = new Map<number, { exec: Executor; ids: number[] }>();

/** Batching statistics since the last report, per model; flushed every STATS_MS. */
const STATS_MS = 200;
const stats = new Map<string, { rows: number[]; joins: number[]; leaves: number[]; positions: number; padPositions: number }>();
function statsOf(model: string) {
  let s = stats.get(model);
  if (!s) stats.set(model, (s = { rows: [], joins: [], leaves: [], positions: 0, padPositions: 0 }));
  return s;
}
setInterval(() => {
  for (const [model, s] of stats) if (s.rows.length || s.joins.length) post({ type: 'stats', model, ...s });
  stats.clear();
}, STATS_MS).unref();

function post(msg: FromWorker): void {
  port.postMessage(msg);
}

function serialize(err: unknown, fallback: ErrorCode = 'DEQ_ERR_INTERNAL'): SerializedError {
  if (isDeqError(err)) return { code: err.code, message: err.message };
  return { code: fallback, message: err instanceof Error ? err.message : String(err) };
}

type Reply = InferReply;

/**
 * The samples [b0, b1) of a job. A DEQ's samples are solved independently, so a job
 * run in slices gets the same answer; what changes is the largest shape ONNX Runtime
 * sees, and so how far its arena grows (a language model's head holds rows × vocabulary
 * log-probabilities: docs/reliability.md).
 */
function sliceJob(job: InferJob, b0: number, b1: number): InferJob {
  const part = (v: Float32Array | BigInt64Array) => {
    const n = v.length / job.batch;
    return v.subarray(b0 * n, b1 * n);
  };
  const each = (r?: Record<string, Float32Array | BigInt64Array>) => (r ? Object.fromEntries(Object.entries(r).map(([k, v]) => [k, part(v)])) : undefined);
  return { ...job, batch: b1 - b0, input: job.input && part(job.input), inputs: each(job.inputs), headInputs: each(job.headInputs), z0: job.z0 && (part(job.z0) as Float32Array) };
}

/** Samples per slice: batch × length stays within `maxRowsPerRun`. */
function slicePer(job: InferJob): number {
  return Math.max(1, Math.floor(init.maxRowsPerRun / (job.length ?? 1)));
}


/**
 * A streamed job's iteration hook: the samples of one iteration (reported together,
 * synchronously) go out as one 'progress' message. `offset`: the first sample of a slice.
 */
function progress(id: number | undefined, job: InferJob): ((offset: number) => IterationHook) | undefined {
  if (id === undefined || !job.stream) return undefined;
  let pending: IterationEvent[] = [];
  const flush = () => {
    post({ type: 'progress', id, events: pending });
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

/**
 * Runs a job through `exec`, in slices of samples when batch × length is over `maxRowsPerRun`
 * (every slice submitted at once: a scheduler solves them together, a serial lane in order).
 * `onIds`: the executor's ids of the slices, for cancellation.
 */
function runJob(exec: Executor, job: InferJob, hook?: (offset: number) => IterationHook, onIds?: (ids: number[]) => void): Promise<Reply> {
  const per = slicePer(job);
  const ids: number[] = [];
  const parts: Promise<Reply>[] = [];
  for (let b0 = 0; b0 < job.batch; b0 += per) {
    const slice = job.batch <= per ? job : sliceJob(job, b0, Math.min(job.batch, b0 + per));
    const { id, result } = exec.submit({
      input: slice.input, inputs: slice.inputs, batch: slice.batch, length: slice.length, headInputs: slice.headInputs,
      outputs: slice.outputs, solver: slice.solver, deadline: slice.deadline, onIteration: hook?.(b0),
      z0: slice.z0, returnState: slice.returnState,
    });
    ids.push(id);
    parts.push(result.then(reply));
  }
  onIds?.(ids);
  return Promise.all(parts).then(
    (replies) => (replies.length === 1 ? replies[0] : { ...joinReplies(replies, job.batch), queueMs: Math.min(...replies.map((r) => r.queueMs ?? 0)) }),
    (err: unknown) => {
      for (const id of ids) exec.cancel(id); // one slice failed: the others' rows are freed too
      throw err;
    },
  );
}

function concat<T extends Float32Array | Float64Array | Int32Array | Uint8Array | BigInt64Array>(list: T[]): T {
  let n = 0;
  for (const a of list) n += a.length;
  const out = new (list[0].constructor as new (n: number) => T)(n);
  let at = 0;
  for (const a of list) {
    (out as unknown as { set(a: T, at: number): void }).set(a, at);
    at += a.length;
  }
  return out;
}

/** The replies of a job's slices as one reply, samples in order. */
function joinReplies(parts: Reply[], batch: number): Reply {
  const first = parts[0];
  const outputs: Reply['outputs'] = {};
  for (const [k, t] of Object.entries(first.outputs)) {
    outputs[k] = { type: t.type, dims: [batch, ...t.dims.slice(1)], data: concat(parts.map((p) => p.outputs[k].data)) as typeof t.data };
  }
  const timing = { ...first.timing };
  const state = first.state && { type: first.state.type, dims: [batch, ...first.state.dims.slice(1)], data: concat(parts.map((p) => p.state!.data as Float32Array)) };
  for (const p of parts.slice(1)) for (const k of Object.keys(timing) as (keyof typeof timing)[]) timing[k] += p.timing[k];
  return {
    outputs,
    ...(state ? { state } : {}),
    solver: {
      iterations: concat(parts.map((p) => p.solver.iterations)),
      residual: concat(parts.map((p) => p.solver.residual)),
      converged: concat(parts.map((p) => p.solver.converged)),
      diverged: concat(parts.map((p) => p.solver.diverged)),
      end: concat(parts.map((p) => p.solver.end)),
      ...(first.solver.trace ? { trace: parts.flatMap((p) => p.solver.trace!) } : {}),
      ...(first.solver.traceLabels ? { traceLabels: parts.flatMap((p) => p.solver.traceLabels!) } : {}),
      calls: parts.reduce((a, p) => a + p.solver.calls, 0),
      stopped: parts.some((p) => p.solver.stopped),
    },
    options: first.options,
    timing,
  };
}

function reply(result: ExecutorResult): InferReply {
  const { iterations, residual, converged, diverged, end, calls, stopped, trace, traceLabels } = result.solver;
  const o = result.options;
  // Rows a deadline stopped before they were admitted have no trace: an empty one.
  const full = <T>(list: T[] | undefined, empty: () => T) => list && Array.from({ length: iterations.length }, (_, i) => list[i] ?? empty());
  return {
    outputs: result.outputs,
    ...(result.state ? { state: result.state } : {}),
    solver: {
      iterations, residual, converged, diverged, end, calls, stopped,
      ...(trace ? { trace: full(trace, () => new Float64Array(0)) } : {}),
      ...(traceLabels ? { traceLabels: full(traceLabels, () => new Int32Array(0)) } : {}),
    },
    options: { method: o.method, tol: o.tol, stopMode: o.stopMode, maxIter: o.maxIter, patience: o.patience, predictionTol: o.predictionTol, predictionMargin: o.predictionMargin },
    timing: result.timing,
    queueMs: result.queueMs,
  };
}

/** A request from the pool: its slices go to its model's executor; the answer is posted when the last one ends. */
function execute(id: number, name: string, job: InferJob): void {
  const exec = executors.get(name);
  if (!exec) {
    post({ type: 'error', id, error: serialize(new DeqError('DEQ_ERR_MODEL_NOT_FOUND', `model ${name} is not loaded in this worker`)) });
    return;
  }
  runJob(exec, job, progress(id, job), (ids) => submitted.set(id, { exec, ids })).then(
    (r) => post({ type: 'result', id, reply: r }),
    (err: unknown) => post({ type: 'error', id, error: serialize(err) }),
  ).finally(() => submitted.delete(id));
}

async function start(): Promise<void> {
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
      models.set(name, model);
      const b = init.batching;
      // Before the model serves anything; with batching, every cell shape a batched solve can take.
      const warm = await model.warmUp({ maxRows: b.mode !== 'off' ? b.maxRows : undefined, maxRowsPerRun: init.maxRowsPerRun });
      loaded.push({ name, provider: model.provider, fallbacks: [...model.providerFallbacks], solverKernel: model.solverKernel, warmupMs: warm.solveMs });
      if (b.mode !== 'off') {
        executors.set(name, new Scheduler(model, { mode: b.mode, maxRows: b.maxRows, maxQueueDelayMs: b.maxQueueDelayMs, requestShare: b.requestShare, gate }, {
          onRun: (rows, positions, padPositions) => {
            const s = statsOf(name);
            s.rows.push(rows);
            s.positions += positions;
            s.padPositions += padPositions;
          },
          onSolveEnd: (joins, leaves) => { const s = statsOf(name); s.joins.push(joins); s.leaves.push(leaves); },
        }));
      } else {
        executors.set(name, new SerialExecutor(model, lane));
      }
    }
  } catch (err) {
    await Promise.allSettled([...models.values()].map((m) => m.release()));
    post({ type: 'fatal', error: serialize(err, 'DEQ_ERR_BUNDLE_INVALID') });
    return;
  }
  post({ type: 'ready', models: loaded });
}

port.on('message', (msg: ToWorker) => {
  if (msg.type === 'infer') {
    execute(msg.id, msg.model, msg.job);
  } else if (msg.type === 'abort') {
    for (const e of executors.values()) e.abortAll();
  } else if (msg.type === 'cancel') {
    const at = submitted.get(msg.id);
    if (at) for (const id of at.ids) at.exec.cancel(id);
  } else if (msg.type === 'crash') {
    // NOTE: Worker.terminate() during a native ORT run aborts the whole process
    // (Napi::Error in a dying env), so a crash is simulated from JS instead.
    setImmediate(() => { throw new Error('simulated worker crash (test hook)'); });
  } else if (msg.type === 'release') {
    Promise.allSettled([...models.values()].map((m) => m.release())).then(() => {
      models.clear();
      post({ type: 'released' });
    });
  }
});

void start();
