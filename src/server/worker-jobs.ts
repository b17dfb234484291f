// A job from the pool as an executor runs it: sliced into runs of at most maxRowsPerRun rows
// (batch × length), each slice submitted to the model's executor, the slices' answers joined
// back into one reply in the protocol's shape (protocol.ts InferReply).
import type { Executor, ExecutorResult, IterationHook } from '../runtime/index.js';
import type { InferJob, InferReply } from './protocol.js';

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
function slicePer(job: InferJob, maxRowsPerRun: number): number {
  return Math.max(1, Math.floor(maxRowsPerRun / (job.length ?? 1)));
}

/**
 * Runs a job through `exec`, in slices of samples when batch × length is over `maxRowsPerRun`
 * (every slice submitted at once: a scheduler solves them together, a serial lane in order).
 * `onIds`: the executor's ids of the slices, for cancellation.
 */
export function runJob(exec: Executor, job: InferJob, maxRowsPerRun: number, hook?: (offset: number) => IterationHook, onIds?: (ids: number[]) => void): Promise<InferReply> {
  const per = slicePer(job, maxRowsPerRun);
  const ids: number[] = [];
  const parts: Promise<InferReply>[] = [];
  for (let b0 = 0; b0 < job.batch; b0 += per) {
    const slice = job.batch <= per ? job : sliceJob(job, b0, Math.min(job.batch, b0 + per));
    // An InferJob is an ExecutorRequest (serving fields aside, which the executor does not read) without its hook.
    const { id, result } = exec.submit({ ...slice, onIteration: hook?.(b0) });
    ids.push(id);
    parts.push(result.then(reply));
  }
  onIds?.(ids);
  return Promise.all(parts).then(
    (replies) => (replies.length === 1 ? replies[0] : joinReplies(replies, job.batch)),
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
function joinReplies(parts: InferReply[], batch: number): InferReply {
  const first = parts[0];
  const outputs: InferReply['outputs'] = {};
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
    queueMs: Math.min(...parts.map((p) => p.queueMs)),
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
