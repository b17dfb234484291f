// Solver worker: owns one DeqModel (three ONNX sessions) per bundle and runs
// solves off the HTTP thread. NOTE: onnxruntime-node's session.run() blocks the
// calling thread (microsoft/onnxruntime#19611), hence a thread per worker.
import { parentPort, workerData } from 'node:worker_threads';
import { DeqError, isDeqError, type ErrorCode } from '../errors.js';
import { DeqModel, type ExecutionProvider, type Manifest } from '../runtime/index.js';
import type { FromWorker, InferJob, SerializedError, ToWorker, WorkerInit } from './protocol.js';

const port = parentPort!;
const init = workerData as WorkerInit;
const models = new Map<string, DeqModel>();
/** Set by an 'abort' message; checked with the deadline between iterations. */
let aborted = false;

function post(msg: FromWorker): void {
  port.postMessage(msg);
}

function serialize(err: unknown, fallback: ErrorCode = 'DEQ_ERR_INTERNAL'): SerializedError {
  if (isDeqError(err)) return { code: err.code, message: err.message };
  return { code: fallback, message: err instanceof Error ? err.message : String(err) };
}

type Reply = Awaited<ReturnType<typeof runWhole>>;

/**
 * Runs a job, in slices of samples when batch × length is over `maxRows`. A DEQ's
 * samples are solved independently, so the answer is the same; what changes is
 * the largest shape ONNX Runtime sees, and so how far its arena grows (a language
 * model's head holds rows × vocabulary log-probabilities: docs/reliability.md).
 */
async function run(name: string, job: InferJob): Promise<Reply> {
  const rowsPerSample = job.length ?? 1;
  const per = Math.max(1, Math.floor(init.maxRows / rowsPerSample));
  if (job.batch <= per) return runWhole(name, job);
  const inputPer = job.input.length / job.batch;
  const parts: Reply[] = [];
  for (let b0 = 0; b0 < job.batch; b0 += per) {
    const b1 = Math.min(job.batch, b0 + per);
    const headInputs: Record<string, Float32Array | BigInt64Array> = {};
    for (const [k, v] of Object.entries(job.headInputs ?? {})) {
      const n = v.length / job.batch;
      headInputs[k] = v.subarray(b0 * n, b1 * n);
    }
    parts.push(await runWhole(name, { ...job, input: job.input.subarray(b0 * inputPer, b1 * inputPer), batch: b1 - b0, headInputs }));
  }
  return joinReplies(parts, job.batch);
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

function joinReplies(parts: Reply[], batch: number): Reply {
  const first = parts[0];
  const outputs: Reply['outputs'] = {};
  for (const [k, t] of Object.entries(first.outputs)) {
    outputs[k] = { type: t.type, dims: [batch, ...t.dims.slice(1)], data: concat(parts.map((p) => p.outputs[k].data)) as typeof t.data };
  }
  const timing = { ...first.timing };
  for (const p of parts.slice(1)) for (const k of Object.keys(timing) as (keyof typeof timing)[]) timing[k] += p.timing[k];
  return {
    outputs,
    solver: {
      iterations: concat(parts.map((p) => p.solver.iterations)),
      residual: concat(parts.map((p) => p.solver.residual)),
      converged: concat(parts.map((p) => p.solver.converged)),
      diverged: concat(parts.map((p) => p.solver.diverged)),
      calls: parts.reduce((a, p) => a + p.solver.calls, 0),
      stopped: parts.some((p) => p.solver.stopped),
    },
    options: first.options,
    timing,
  };
}

async function runWhole(name: string, job: InferJob) {
  const model = models.get(name);
  if (!model) throw new DeqError('DEQ_ERR_MODEL_NOT_FOUND', `model ${name} is not loaded in this worker`);
  const { deadline } = job;
  const result = await model.infer({
    input: job.input,
    batch: job.batch,
    length: job.length,
    headInputs: job.headInputs,
    outputs: job.outputs,
    // Checked between solver iterations: a native run cannot be interrupted.
    solver: { ...job.solver, shouldStop: () => aborted || Date.now() >= deadline },
  });
  const { iterations, residual, converged, diverged, calls, stopped } = result.solver;
  const o = result.options;
  return {
    outputs: result.outputs,
    solver: { iterations, residual, converged, diverged, calls, stopped },
    options: { method: o.method, tol: o.tol, stopMode: o.stopMode, maxIter: o.maxIter },
    timing: result.timing,
  };
}

/** A zero input of the model's shape: the first run at each shape is the slow one. */
function warmupJob(m: Manifest): InferJob {
  const spec = m.graphs.inject.inputs[0];
  const length = spec.shape.includes(-1) ? Math.min(m.tokenizer?.context ?? 8, 8) : undefined;
  const size = spec.shape.reduce((a, d) => a * (d === -1 ? length! : d), 1);
  const headInputs: Record<string, Float32Array | BigInt64Array> = {};
  for (const h of m.graphs.head.inputs.slice(1)) {
    const n = h.shape.reduce((a, d) => a * (d === -1 ? length! : d), 1);
    headInputs[h.name] = h.dtype === 'int64' ? new BigInt64Array(n) : new Float32Array(n);
  }
  return {
    input: spec.dtype === 'int64' ? new BigInt64Array(size) : new Float32Array(size),
    batch: 1,
    length,
    headInputs,
    solver: { method: m.solver.method, tol: m.solver.tol, stopMode: m.solver.stop_mode, maxIter: m.solver.max_iter },
    deadline: Date.now() + 60_000,
  };
}

async function start(): Promise<void> {
  const loaded: { name: string; provider: string; warmupMs: number }[] = [];
  try {
    for (const { name, dir } of init.models) {
      const model = await DeqModel.load(dir, {
        providers: init.providers as ExecutionProvider[],
        intraOpThreads: init.intraOpThreads,
        interOpThreads: 1,
        cpuMemArena: init.cpuMemArena,
        memPattern: init.memPattern,
      });
      models.set(name, model);
      const t0 = performance.now();
      await run(name, warmupJob(model.manifest));
      loaded.push({ name, provider: model.provider, warmupMs: performance.now() - t0 });
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
    aborted = false;
    run(msg.model, msg.job).then(
      (reply) => post({ type: 'result', id: msg.id, reply }),
      (err: unknown) => post({ type: 'error', id: msg.id, error: serialize(err) }),
    );
  } else if (msg.type === 'abort') {
    aborted = true;
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
