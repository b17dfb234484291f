// DeqModel.infer with the solver on the host (solverPlacement 'host'): prepare → the
// TypeScript solve over pooled cell batches, workspaces and labelers → finish.
import { solve, SolverWorkspace, type ResolvedSolverOptions, type SolveResult, type SolverKernel } from '../solver/index.js';
import type { CellBatch } from './cell-batch.js';
import type { DeqModel } from './deq-model.js';
import type { InferRequest, InferResult, Prepared } from './infer-types.js';
import type { IterateLabeler } from './iterate-labels.js';
import { SparePool } from './spare-pool.js';

/** Idle buffers of a model's host solves, by shape: each infer() takes its own and gives it back. */
export interface HostPools {
  workspaces: SparePool<SolverWorkspace>;
  /** CellBatches: four buffers of batch × state each, too many to allocate per request. */
  cells: SparePool<CellBatch>;
  /** IterateLabelers, by batch. */
  labelers: SparePool<IterateLabeler>;
}

export function hostPools(): HostPools {
  return { workspaces: new SparePool(), cells: new SparePool(), labelers: new SparePool() };
}

/** Runs `model` on a batch with the host solver, buffers from `pools`. */
export async function inferOnHost(model: DeqModel, pools: HostPools, req: InferRequest): Promise<InferResult> {
  const t0 = performance.now();
  const prep = await model.prepare(req);
  const { batch, n } = prep;
  const t1 = performance.now();
  const cellsKey = cellsShapeKey(prep, batch);
  const cells = pools.cells.take(cellsKey) ?? model.cellBatch(prep, batch);
  for (let i = 0; i < batch; i++) cells.setRow(i, prep, i);
  const cellMs0 = cells.elapsed;
  const z = req.z0 ? Float32Array.from(req.z0) : new Float32Array(batch * n);
  const o = prep.options;
  const ws = takeWorkspace(pools.workspaces, o, batch, n, model.solverKernel);
  // The head labels iterates only when the request needs it: early exit, or a trace of a classifier.
  const labeler = o.patience > 0 || ((o.trace || req.onIteration) && model.canLabel) ? pools.labelers.take(String(batch)) ?? model.labeler(prep, batch) : undefined;
  let result: SolveResult;
  try {
    const options = {
      ...o,
      onIteration: req.onIteration && ((i: number, it: number, r: number, label: number) => req.onIteration!(i, it, r, label, label >= 0 ? labeler?.topK(i) : undefined)),
      ...(labeler ? { predict: (zz: Float32Array, want: Uint8Array, labels: Int32Array, margins: Float64Array) => labeler.run(zz, want, labels, margins) } : {}),
    };
    result = await solve((zz, out, active) => cells.run(zz, out, active), batch, n, z, options, ws);
  } finally {
    pools.workspaces.give(workspaceKey(ws.method, ws.batch, ws.n, ws.history, ws.kernel), ws);
    pools.cells.give(cellsKey, cells);
    if (labeler) pools.labelers.give(String(batch), labeler);
  }
  const cellMs = cells.elapsed - cellMs0;
  const t2 = performance.now();
  const outputs = await model.finish(prep, z, req.outputs);
  const t3 = performance.now();
  return {
    outputs,
    ...(req.returnState ? { state: { type: 'float32' as const, data: z, dims: prep.stateDims } } : {}),
    solver: result,
    options: prep.options,
    timing: { injectMs: t1 - t0, solveMs: t2 - t1, cellMs, headMs: t3 - t2, totalMs: t3 - t0 },
  };
}

function takeWorkspace(pool: SparePool<SolverWorkspace>, o: ResolvedSolverOptions, batch: number, n: number, kernel: SolverKernel): SolverWorkspace {
  return pool.take(workspaceKey(o.method, batch, n, o.history, kernel)) ?? new SolverWorkspace(o.method, batch, n, o.history, kernel);
}

function workspaceKey(method: string, batch: number, n: number, history: number, kernel: string): string {
  return `${method}:${batch}:${n}:${history}:${kernel}`;
}

// What decides a CellBatch's layout for infer(): batch and the per-row shapes of z and of the cell's inputs.
function cellsShapeKey(prep: Prepared, batch: number): string {
  return [batch, prep.stateDims.slice(1).join('x'), ...prep.cellArgs.map((t) => `${t.type}[${t.dims.slice(1).join('x')}]`)].join('|');
}
