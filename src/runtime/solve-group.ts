// The scheduler's row bookkeeping: a request (Job) and its rows, the solve its rows share
// with others of the same shape (Group) and each slot's job and row, and how a row enters
// a slot (admitRow) and leaves it with its best iterate and stats (collectRow).
import type { DeqError } from '../errors.js';
import { SolveSession, SolverWorkspace, type SolveResult } from '../solver/index.js';
import type { CellBatch } from './cell-batch.js';
import type { DeqModel } from './deq-model.js';
import type { ExecutorRequest, ExecutorResult } from './executor.js';
import type { IterateLabeler } from './iterate-labels.js';
import type { SolvePlan } from './solve-plan.js';

export interface Job {
  id: number;
  req: ExecutorRequest;
  submittedAt: number;
  /** The request as DeqModel.plan prepared it; null until then. */
  plan: SolvePlan | null;
  prepMs: number;
  /** Rows not yet admitted, in order. */
  pending: number[];
  active: number;
  done: number;
  admittedAt: number;
  z: Float32Array | null;
  stats: Pick<SolveResult, 'iterations' | 'residual' | 'converged' | 'diverged' | 'end' | 'trace' | 'traceLabels'> | null;
  calls: number;
  cellMs: number;
  /** The last cell run this request took part in (Scheduler.#runs). */
  lastRun: number;
  stopped: boolean;
  /** Static mode: the batch (solve) the job's rows ran in; answered when it ends. */
  cancelled: DeqError | null;
  resolve: (r: ExecutorResult) => void;
  reject: (e: Error) => void;
}

export interface Group {
  key: string;
  session: SolveSession;
  cells: CellBatch;
  /** The head's top-1 on the slots' iterates (early exit, label traces); made on first need. */
  labeler: IterateLabeler | null;
  /** The job and its row index in each slot. */
  slotJob: (Job | null)[];
  slotRow: Int32Array;
  /** Iterations of the current solve (0 while idle). */
  turns: number;
  joins: number;
  leaves: number;
  /** Static mode: the jobs of the running batch. */
  batch: Set<Job>;
}

/**
 * A job whose request `model` planned as `plan`: its rows waiting, its result buffers. A padded
 * model's rows are always solved at their padded length (plan.padding), alone or not, so a
 * request's answer does not depend on its company (and windows of one bucket share solves).
 */
export function jobPlanned(job: Job, plan: SolvePlan, model: DeqModel): void {
  job.plan = plan;
  job.pending = Array.from({ length: plan.batch }, (_, i) => i);
  job.z = new Float32Array(plan.batch * plan.n);
  job.stats = {
    iterations: new Int32Array(plan.batch), residual: new Float64Array(plan.batch).fill(Infinity),
    converged: new Uint8Array(plan.batch), diverged: new Uint8Array(plan.batch), end: new Uint8Array(plan.batch),
    ...(plan.options.trace ? { trace: new Array<Float64Array>(plan.batch), ...(model.canLabel ? { traceLabels: new Array<Int32Array>(plan.batch) } : {}) } : {}),
  };
}

/** A new, idle solve of `maxRows` slots for jobs shaped like `job` (its plan's key). */
export function openGroup(key: string, job: Job, model: DeqModel, maxRows: number): Group {
  const plan = job.plan!;
  const o = plan.options;
  const cells = model.cellBatch(plan.prepared, maxRows, plan.padding);
  // Rows are cells.n long: the padded state when the model pads (plan.n is one request's own).
  const ws = new SolverWorkspace(o.method, maxRows, cells.n, o.history, model.solverKernel);
  return {
    key, session: new SolveSession(ws, { ...o, trace: false, sampleTol: undefined, sampleMaxIter: undefined }),
    cells, labeler: null, slotJob: new Array(maxRows).fill(null), slotRow: new Int32Array(maxRows),
    turns: 0, joins: 0, leaves: 0, batch: new Set(),
  };
}

/** Puts row `row` of `job` in free slot `slot` of `g`, with the request's own stopping settings. */
export function admitRow(g: Group, job: Job, row: number, slot: number, canLabel: boolean): void {
  const plan = job.plan!;
  const o = plan.options;
  g.cells.setRow(slot, plan.prepared, row, plan.length);
  // A warm start's row; a padded model's own positions come first, zeros after (as setRow lays out the inputs).
  let z0: Float32Array | undefined;
  if (job.req.z0) {
    const n = plan.n;
    z0 = job.req.z0.subarray(row * n, (row + 1) * n);
    if (g.cells.n !== n) { const padded = new Float32Array(g.cells.n); padded.set(z0); z0 = padded; }
  }
  g.session.admit(slot, {
    tol: o.sampleTol ? o.sampleTol[row] : o.tol,
    maxIter: o.sampleMaxIter ? o.sampleMaxIter[row] : o.maxIter,
    stopMode: o.stopMode,
    patience: o.patience,
    predictionTol: o.predictionTol,
    predictionMargin: o.predictionMargin,
    trace: o.trace || job.req.onIteration !== undefined,
    traceLabels: (o.trace || job.req.onIteration !== undefined) && canLabel,
  }, z0);
  g.slotJob[slot] = job;
  g.slotRow[slot] = row;
  if (job.active === 0 && job.done === 0) job.admittedAt = performance.now();
  job.active++;
  if (g.turns > 0) g.joins++;
}

/**
 * A row left slot `s` (stopped, or evicted): its best iterate and stats go to its request.
 * A padded row's own positions come first; the head runs on them alone. Returns the row's
 * iterations, or -1 when the slot was empty.
 */
export function collectRow(g: Group, s: number): number {
  const job = g.slotJob[s];
  if (!job) return -1;
  const r = g.slotRow[s], n = job.plan!.n, sess = g.session;
  job.z!.set(sess.bestRow(s).subarray(0, n), r * n);
  const st = job.stats!;
  st.iterations[r] = sess.iterations[s];
  st.residual[r] = sess.residual[s];
  st.converged[r] = sess.converged[s];
  st.diverged[r] = sess.diverged[s];
  st.end[r] = sess.end[s];
  if (st.trace) st.trace[r] = sess.trace[s]!.slice(0, sess.iterations[s]);
  if (st.traceLabels) st.traceLabels[r] = sess.traceLabels[s]!.slice(0, sess.iterations[s]);
  g.slotJob[s] = null;
  job.active--;
  job.done++;
  return sess.iterations[s];
}
