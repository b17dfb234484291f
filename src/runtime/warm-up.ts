// A loaded model's warm-up (DeqModel.warmUp): the solves and cell runs that make ONNX Runtime
// set up each shape the model will serve, before it serves anything. The first run at a shape
// is the slow one (a language model's at its full context, a CUDA graph's by seconds).
import { padLength } from './cell-batch.js';
import type { DeqModel, InferRequest } from './deq-model.js';
import { modelInputs, type Manifest } from './manifest.js';

export interface WarmUpOptions {
  /**
   * Rows a batched solve may hold (the scheduler's maxRows): the cell is also warmed at every
   * row count up to it, and a padded model at every padded length. Omit when the model serves
   * one request at a time.
   */
  maxRows?: number;
  /**
   * Largest batch × sequence length one solve sees (a server's --max-rows-per-run): a bigger
   * warm-up batch solves in slices, as a request would. Default: no limit.
   */
  maxRowsPerRun?: number;
}

export interface WarmUpReport {
  /** The first warm-up solve: batch 1 at the manifest's solver settings (what the server reports). */
  solveMs: number;
  /** The whole warm-up, batched shapes included. */
  totalMs: number;
}

/** A warm-up solve stops here, however far it got: warm-up must not hold a server's start forever. */
const WARM_SOLVE_LIMIT_MS = 60_000;

/** DeqModel.warmUp: see there. */
export async function warmUpModel(model: DeqModel, o: WarmUpOptions = {}): Promise<WarmUpReport> {
  const m = model.manifest;
  const t0 = performance.now();
  await solveInSlices(model, warmRequest(m), o.maxRowsPerRun);
  const solveMs = performance.now() - t0;
  if (o.maxRows !== undefined) {
    // A batched solve runs the cell at every row count up to maxRows: one cell run at each.
    for (let rows = 2; rows <= o.maxRows; rows++) {
      const req = warmRequest(m, rows, m.tokenizer?.context);
      await solveInSlices(model, { ...req, solver: { ...req.solver, maxIter: 1 } }, o.maxRowsPerRun);
    }
    await warmPaddedCell(model, o.maxRows);
  }
  return { solveMs, totalMs: performance.now() - t0 };
}

/**
 * A zero input of the model's shape at the manifest's solver settings.
 * `length` is the sequence length of models with one (default: up to 8).
 */
function warmRequest(m: Manifest, batch = 1, length?: number): InferRequest {
  const symbolic = modelInputs(m).some((t) => t.shape.includes(-1)) || m.state.shape.includes(-1);
  if (symbolic) length ??= Math.min(m.tokenizer?.context ?? 8, 8);
  else length = undefined;
  const inputs: Record<string, Float32Array | BigInt64Array> = {};
  for (const t of modelInputs(m)) {
    const n = batch * t.shape.reduce((a, d) => a * (d === -1 ? length! : d), 1);
    inputs[t.name] = t.dtype === 'int64' ? new BigInt64Array(n) : new Float32Array(n);
  }
  const deadline = Date.now() + WARM_SOLVE_LIMIT_MS;
  return {
    inputs,
    batch,
    length,
    solver: { method: m.solver.method, tol: m.solver.tol, stopMode: m.solver.stop_mode, maxIter: m.solver.max_iter, shouldStop: () => Date.now() >= deadline },
  };
}

/** Solves `req` in slices of samples whose batch × length stays within `maxRowsPerRun`, one after another. */
async function solveInSlices(model: DeqModel, req: InferRequest, maxRowsPerRun = Infinity): Promise<void> {
  const per = Math.max(1, Math.floor(maxRowsPerRun / (req.length ?? 1)));
  for (let b0 = 0; b0 < req.batch; b0 += per) {
    const b1 = Math.min(req.batch, b0 + per);
    const inputs: Record<string, Float32Array | BigInt64Array> = {};
    for (const [name, v] of Object.entries(req.inputs!)) {
      const n = v.length / req.batch;
      inputs[name] = v.subarray(b0 * n, b1 * n);
    }
    await model.infer({ ...req, inputs, batch: b1 - b0 });
  }
}

/**
 * Padded models (state.pad): one cell run at every shape a batched solve can take, rows
 * 1…maxRows at each padded length (the buckets of padLength), so no request pays a first run.
 */
async function warmPaddedCell(model: DeqModel, maxRows: number): Promise<void> {
  const context = model.manifest.tokenizer?.context;
  if (model.manifest.state.pad !== 'right' || !context) return;
  const lengths = new Set<number>();
  for (let L = 1; L <= context; L++) lengths.add(padLength(L, context));
  for (const P of lengths) {
    const prep = await model.prepare(warmRequest(model.manifest, 1, P));
    const padding = model.cellPadding(P)!;
    for (let rows = 1; rows <= maxRows; rows++) {
      const cells = model.cellBatch(prep, rows, padding);
      for (let i = 0; i < rows; i++) cells.setRow(i, prep, 0, P);
      await cells.run(new Float32Array(rows * cells.n), new Float32Array(rows * cells.n), new Uint8Array(rows).fill(1));
    }
  }
}
