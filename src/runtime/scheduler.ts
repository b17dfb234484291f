import { DeqError } from '../errors.js';
import type { Executor, ExecutorRequest, ExecutorResult } from './executor.js';
import { SolveSession, SolverWorkspace, type ResolvedSolverOptions, type SolveResult } from '../solver/index.js';
import type { CellBatch, CellPadding } from './cell-batch.js';
import type { IterateLabeler } from './iterate-labels.js';
import type { DeqModel, Prepared, TensorValue } from './deq-model.js';
import type { TurnGate } from './turn-gate.js';

/**
 * `continuous`: requests join a running solve at the next iteration boundary and
 * leave, with their answer, at the iteration where they stop. `static`: a batch is
 * formed once and answered when its slowest member stops (the baseline a dynamic
 * batcher gives; here as a mode of the same scheduler so the two can be compared).
 */
export type BatchingMode = 'continuous' | 'static';

export interface SchedulerOptions {
  mode: BatchingMode;
  /** Rows (samples) per cell run: the slots of one solve. */
  maxRows: number;
  /** How long an idle solve waits for company before it starts (Triton's max_queue_delay). */
  maxQueueDelayMs: number;
  /** The largest share of the slots one request may hold (continuous mode), in (0, 1]. */
  requestShare: number;
  /**
   * Shared by the schedulers of one worker thread: each cell run waits for its turn, and the
   * model whose rows need the fewest iterations (a running average) goes first.
   */
  gate?: TurnGate;
}

/** Shapes (e.g. language-model window lengths) whose solve buffers are kept while idle (measured: 16 beat 4 on Brown sentences). */
const MAX_IDLE_GROUPS = 16;

export const SCHEDULER_DEFAULTS: Readonly<SchedulerOptions> = Object.freeze({ mode: 'continuous', maxRows: 32, maxQueueDelayMs: 0, requestShare: 0.5 });

/** What the scheduler reports for metrics. */
export interface SchedulerHooks {
  /**
   * After every cell run: how many rows it evaluated; for padded models (state.pad) also
   * the sequence positions it evaluated (rows × padded length) and how many were padding.
   */
  onRun?(rows: number, positions: number, padPositions: number): void;
  /** When a solve goes idle: rows that joined after it started, rows that left while others ran on. */
  onSolveEnd?(joins: number, leaves: number): void;
  /** At every iteration boundary, before admissions (tests submit here to join mid-solve). */
  onBoundary?(): void;
}

interface Job {
  id: number;
  req: ExecutorRequest;
  submittedAt: number;
  prep: Prepared | null;
  prepMs: number;
  /** Padded models: the length the request's rows are solved at (see DeqModel.cellPadding). */
  padding: CellPadding | undefined;
  key: string;
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

interface Group {
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
 * Continuous batching of solver iterations for one model, on one thread (a solver
 * worker). Requests with the same solver method and state shape share a
 * SolveSession and a CellBatch; each keeps its own tolerance, cap, stop mode,
 * deadline and solver history (per-row state in the session), so its answer is the
 * one it would get alone. Groups take turns, one iteration each. For a model whose
 * manifest declares `state.pad`, the state shape is taken at the padded length
 * (DeqModel.cellPadding), so language-model windows of different lengths share.
 */
export class Scheduler implements Executor {
  readonly model: DeqModel;
  readonly options: Readonly<SchedulerOptions>;
  readonly #hooks: SchedulerHooks;
  readonly #jobs = new Map<number, Job>();
  readonly #groups = new Map<string, Group>();
  #nextId = 1;
  /** Cell runs so far, over all groups. */
  #runs = 0;
  #running = false;
  #aborted = false;
  #wake: (() => void) | null = null;
  /** Running average of the iterations a row takes here: this scheduler's priority at the gate. */
  #meanIterations = 0;

  constructor(model: DeqModel, options: Partial<SchedulerOptions> = {}, hooks: SchedulerHooks = {}) {
    const o = { ...SCHEDULER_DEFAULTS, ...options };
    if (!(Number.isInteger(o.maxRows) && o.maxRows >= 1)) throw new RangeError(`maxRows must be an integer ≥ 1 (got ${o.maxRows})`);
    if (!(o.maxQueueDelayMs >= 0)) throw new RangeError(`maxQueueDelayMs must be ≥ 0 (got ${o.maxQueueDelayMs})`);
    if (!(o.requestShare > 0 && o.requestShare <= 1)) throw new RangeError(`requestShare must be in (0, 1] (got ${o.requestShare})`);
    this.model = model;
    this.options = Object.freeze(o);
    this.#hooks = hooks;
  }

  /** Requests submitted and not yet answered. */
  get size(): number {
    return this.#jobs.size;
  }

  /** Queues a request; resolves with its answer, or rejects if its inputs are bad. Returns its id for `cancel`. */
  submit(req: ExecutorRequest): { id: number; result: Promise<ExecutorResult> } {
    const id = this.#nextId++;
    const result = new Promise<ExecutorResult>((resolve, reject) => {
      const job: Job = {
        id, req, submittedAt: performance.now(), prep: null, prepMs: 0, padding: undefined, key: '', pending: [], active: 0, done: 0, admittedAt: 0,
        z: null, stats: null, calls: 0, cellMs: 0, lastRun: 0, stopped: false, cancelled: null, resolve, reject,
      };
      this.#jobs.set(id, job);
      this.#prepare(job);
    });
    return { id, result };
  }

  /** Frees a request's rows at the next boundary and rejects it with DEQ_ERR_CANCELLED (its client went away). */
  cancel(id: number): void {
    const job = this.#jobs.get(id);
    if (!job || job.cancelled) return;
    job.cancelled = new DeqError('DEQ_ERR_CANCELLED', 'the request was cancelled');
    this.#kick();
  }

  /** Stops every request at the next boundary; each is answered from its best iterates, `stopped` (shutdown). */
  abortAll(): void {
    this.#aborted = true;
    this.#kick();
  }

  #prepare(job: Job): void {
    const t0 = performance.now();
    this.model.prepare(job.req).then((prep) => {
      job.prep = prep;
      job.prepMs = performance.now() - t0;
      // A padded model's rows are always solved at their padded length, alone or not, so a
      // request's answer does not depend on its company (and windows of one bucket share solves).
      job.padding = this.model.cellPadding(prep.length);
      job.key = groupKey(prep, this.model.solverKernel, job.padding);
      job.pending = Array.from({ length: prep.batch }, (_, i) => i);
      job.z = new Float32Array(prep.batch * prep.n);
      job.stats = {
        iterations: new Int32Array(prep.batch), residual: new Float64Array(prep.batch).fill(Infinity),
        converged: new Uint8Array(prep.batch), diverged: new Uint8Array(prep.batch), end: new Uint8Array(prep.batch),
        ...(prep.options.trace ? { trace: new Array<Float64Array>(prep.batch), ...(this.model.canLabel ? { traceLabels: new Array<Int32Array>(prep.batch) } : {}) } : {}),
      };
      this.#kick();
    }, (err: Error) => {
      this.#jobs.delete(job.id);
      job.reject(err);
      this.#kick();
    });
  }

  #kick(): void {
    if (this.#wake) {
      const w = this.#wake;
      this.#wake = null;
      w();
    }
    if (!this.#running) {
      this.#running = true;
      this.#loop().catch((err: Error) => this.#failAll(err)).finally(() => { this.#running = false; });
    }
  }

  async #loop(): Promise<void> {
    for (;;) {
      this.#hooks.onBoundary?.();
      this.#reap();
      const waiting = this.#admit();
      let ran = false;
      for (const g of [...this.#groups.values()]) {
        if (g.session.activeCount === 0) continue;
        await this.#turn(g);
        ran = true;
      }
      if (ran) continue;
      if (waiting > 0) {
        // Idle with requests waiting for company: sleep out the rest of the queue delay.
        await this.#sleep(waiting);
        continue;
      }
      if ([...this.#jobs.values()].some((j) => j.prep === null)) {
        await this.#sleep(Infinity); // woken when a preparation finishes
        continue;
      }
      this.#aborted = false;
      return;
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = Number.isFinite(ms) ? setTimeout(() => { this.#wake = null; resolve(); }, Math.max(0, ms)) : null;
      this.#wake = () => { if (timer) clearTimeout(timer); resolve(); };
    });
  }

  // Deadlines, cancellations and shutdown: rows stop here, between iterations.
  #reap(): void {
    const now = Date.now();
    for (const job of this.#jobs.values()) {
      if (!job.prep) continue;
      const expired = this.#aborted || (job.req.deadline !== undefined && now >= job.req.deadline);
      if (!job.cancelled && !expired) continue;
      for (const g of this.#groups.values()) {
        for (let s = 0; s < g.slotJob.length; s++) {
          if (g.slotJob[s] !== job) continue;
          g.session.evict(s);
          this.#collect(g, s);
        }
      }
      job.pending.length = 0;
      if (job.cancelled) {
        this.#jobs.delete(job.id);
        job.reject(job.cancelled);
        continue;
      }
      job.stopped = true;
      if (this.options.mode === 'static') this.#groups.get(job.key)?.batch.delete(job);
      void this.#answer([job]);
    }
  }

  // Admits waiting rows into free slots. Returns how long (ms) idle solves should still
  // wait for company, 0 when nothing waits.
  #admit(): number {
    const { maxRows, requestShare, maxQueueDelayMs, mode } = this.options;
    const perJob = Math.max(1, Math.floor(maxRows * requestShare));
    let wait = 0;
    const byKey = new Map<string, Job[]>();
    for (const job of this.#jobs.values()) {
      if (!job.prep || job.pending.length === 0) continue;
      let list = byKey.get(job.key);
      if (!list) byKey.set(job.key, (list = []));
      list.push(job);
    }
    for (const [key, jobs] of byKey) {
      let g = this.#groups.get(key);
      const idle = !g || g.session.activeCount === 0;
      if (mode === 'static' && !idle) continue; // a static batch takes no one mid-solve
      if (idle) {
        // Wait for company up to the queue delay, unless the rows already fill a solve.
        const rows = jobs.reduce((a, j) => a + j.pending.length, 0);
        const age = performance.now() - Math.min(...jobs.map((j) => j.submittedAt));
        if (rows < maxRows && age < maxQueueDelayMs) {
          wait = Math.max(wait, maxQueueDelayMs - age);
          continue;
        }
      }
      g ??= this.#group(key, jobs[0]);
      // Round-robin over the waiting jobs, one row at a time. In continuous mode no request holds
      // more than its share of the slots, even alone: a newcomer can always join at the next
      // boundary instead of waiting for a big request's rows to finish (measured cost: the cell's
      // per-sample time barely changes between half and full batch width).
      let progress = true;
      while (progress) {
        progress = false;
        for (const job of jobs) {
          if (job.pending.length === 0) continue;
          if (mode === 'continuous' && job.active >= perJob) continue;
          const slot = g.session.freeSlot();
          if (slot < 0) break;
          this.#admitRow(g, job, job.pending.shift()!, slot);
          progress = true;
        }
      }
    }
    return wait;
  }

  #admitRow(g: Group, job: Job, row: number, slot: number): void {
    const prep = job.prep!;
    const o = prep.options;
    g.cells.setRow(slot, prep.cellArgs, row, prep.length);
    // A warm start's row; a padded model's own positions come first, zeros after (as setRow lays out the inputs).
    let z0: Float32Array | undefined;
    if (job.req.z0) {
      const n = prep.n;
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
      traceLabels: (o.trace || job.req.onIteration !== undefined) && this.model.canLabel,
    }, z0);
    g.slotJob[slot] = job;
    g.slotRow[slot] = row;
    if (job.active === 0 && job.done === 0) job.admittedAt = performance.now();
    job.active++;
    if (g.turns > 0) g.joins++;
    if (this.options.mode === 'static') g.batch.add(job);
  }

  #group(key: string, job: Job): Group {
    const { maxRows } = this.options;
    const prep = job.prep!;
    const o = prep.options;
    const cells = this.model.cellBatch(prep, maxRows, job.padding);
    // Rows are cells.n long: the padded state when the model pads (prep.n is one request's own).
    const ws = new SolverWorkspace(o.method, maxRows, cells.n, o.history, this.model.solverKernel);
    const g: Group = {
      key, session: new SolveSession(ws, { ...o, trace: false, sampleTol: undefined, sampleMaxIter: undefined }),
      cells, labeler: null, slotJob: new Array(maxRows).fill(null), slotRow: new Int32Array(maxRows),
      turns: 0, joins: 0, leaves: 0, batch: new Set(),
    };
    this.#groups.set(key, g);
    return g;
  }

  async #turn(g: Group): Promise<void> {
    const gate = this.options.gate;
    if (!gate) return this.#iterate(g);
    await gate.acquire(this.#meanIterations);
    try {
      await this.#iterate(g);
    } finally {
      gate.release();
    }
  }

  // One iteration of a group: f on its active rows, then each row's step; rows that
  // stopped are collected and their requests answered as soon as all their rows are in.
  async #iterate(g: Group): Promise<void> {
    const { session, cells } = g;
    const ws = session.ws;
    const before = cells.elapsed;
    await cells.run(ws.z, ws.fz, ws.active);
    const runMs = cells.elapsed - before;
    this.#hooks.onRun?.(cells.lastRows, cells.lastPositions, cells.lastPadPositions);
    const want = session.predictionMask();
    if (want) {
      g.labeler ??= this.model.labeler(g.slotJob.find((j) => j !== null)!.prep!, cells.capacity);
      await g.labeler.run(ws.z, want, session.prediction, session.predictionMargin);
    }
    // Each request counts the run once, however many of its rows it evaluated (no per-run allocation).
    const turn = ++this.#runs;
    for (let s = 0; s < g.slotJob.length; s++) {
      const job = g.slotJob[s];
      if (!job || !ws.active[s] || job.lastRun === turn) continue;
      job.lastRun = turn;
      job.calls++;
      job.cellMs += runMs;
    }
    g.turns++;
    session.advance();
    // Rows still in a slot were evaluated this turn (new ones were admitted before it, stopped ones leave below).
    for (let s = 0; s < g.slotJob.length; s++) {
      const job = g.slotJob[s];
      if (!job?.req.onIteration) continue;
      const it = session.iterations[s];
      const label = session.traceLabels[s]?.[it - 1] ?? -1;
      job.req.onIteration(g.slotRow[s], it, session.trace[s]![it - 1], label, label >= 0 ? g.labeler?.topK(s) : undefined);
    }
    const stillRunning = session.activeCount > 0;
    const finished: Job[] = [];
    for (let k = 0; k < session.endedCount; k++) {
      if (stillRunning) g.leaves++;
      const s = session.ended[k];
      const job = g.slotJob[s]!;
      this.#collect(g, s);
      if (this.options.mode === 'continuous' && job.active === 0 && job.pending.length === 0) finished.push(job);
    }
    if (finished.length > 0) await this.#answer(finished);
    if (!stillRunning) {
      if (this.options.mode === 'static') {
        const batch = [...g.batch];
        g.batch.clear();
        await this.#answer(batch.filter((job) => job.active === 0 && job.pending.length === 0));
      }
      this.#hooks.onSolveEnd?.(g.joins, g.leaves);
      g.turns = 0;
      g.joins = 0;
      g.leaves = 0;
      // Idle solves keep their buffers for the next request of that shape; a few at most.
      if (this.#groups.size > MAX_IDLE_GROUPS) this.#groups.delete(g.key);
    }
  }

  // A row left its slot (stopped, or evicted): its best iterate and stats go to its request.
  // A padded row's own positions come first; the head runs on them alone.
  #collect(g: Group, s: number): void {
    const job = g.slotJob[s];
    if (!job) return;
    const r = g.slotRow[s], n = job.prep!.n, sess = g.session;
    job.z!.set(sess.bestRow(s).subarray(0, n), r * n);
    const st = job.stats!;
    st.iterations[r] = sess.iterations[s];
    this.#meanIterations += (sess.iterations[s] - this.#meanIterations) * (this.#meanIterations === 0 ? 1 : 0.1);
    st.residual[r] = sess.residual[s];
    st.converged[r] = sess.converged[s];
    st.diverged[r] = sess.diverged[s];
    st.end[r] = sess.end[s];
    if (st.trace) st.trace[r] = sess.trace[s]!.slice(0, sess.iterations[s]);
    if (st.traceLabels) st.traceLabels[r] = sess.traceLabels[s]!.slice(0, sess.iterations[s]);
    g.slotJob[s] = null;
    job.active--;
    job.done++;
  }

  // Answers requests whose rows have all stopped. Those whose head reads z alone and that
  // want the same outputs share one head run (DeqModel.finishTogether).
  async #answer(jobs: readonly Job[]): Promise<void> {
    const heads = new Map<string, Job[]>();
    for (const job of jobs) {
      if (!this.#jobs.delete(job.id)) continue;
      const key = this.model.canShareHead(job.prep!) ? `outputs:${job.req.outputs?.join(',') ?? '*'}` : `own:${job.id}`;
      const list = heads.get(key);
      if (list) list.push(job);
      else heads.set(key, [job]);
    }
    for (const list of heads.values()) await this.#head(list);
  }

  async #head(jobs: readonly Job[]): Promise<void> {
    const t0 = performance.now();
    let outputs: Record<string, TensorValue>[];
    try {
      outputs = await this.model.finishTogether(jobs.map((j) => ({ prep: j.prep!, z: j.z! })), jobs[0].req.outputs);
    } catch (err) {
      for (const job of jobs) job.reject(err as Error);
      return;
    }
    const t1 = performance.now();
    jobs.forEach((job, i) => {
      const prep = job.prep!;
      job.resolve({
        outputs: outputs[i],
        ...(job.req.returnState ? { state: { type: 'float32' as const, data: job.z!, dims: prep.stateDims } } : {}),
        solver: { ...job.stats!, calls: job.calls, stopped: job.stopped },
        options: prep.options,
        queueMs: (job.admittedAt || t0) - job.submittedAt,
        timing: { injectMs: job.prepMs, solveMs: t0 - (job.admittedAt || t0), cellMs: job.cellMs, headMs: t1 - t0, totalMs: t1 - job.submittedAt },
      });
    });
  }

  #failAll(err: Error): void {
    for (const job of this.#jobs.values()) job.reject(err);
    this.#jobs.clear();
    for (const g of this.#groups.values()) {
      for (let s = 0; s < g.slotJob.length; s++) { g.session.evict(s); g.slotJob[s] = null; }
    }
  }
}

// Requests share a solve when everything but the per-row settings agrees: method and its
// parameters, history, kernel, and the shapes of the state and of the cell's inputs (for a
// padded model, at the padded length: windows of different lengths in one bucket share).
function groupKey(prep: Prepared, kernel: string, padding: CellPadding | undefined): string {
  const o: ResolvedSolverOptions = prep.options;
  const dims = (d: readonly number[], padded: boolean) => (padding && padded ? [padding.length, ...d.slice(2)] : d.slice(1)).join('x');
  return [
    o.method, o.history, o.lineSearch, o.andersonLambda, o.andersonBeta, o.damping, o.divergenceFactor, o.restartFactor, kernel,
    dims(prep.stateDims, true), ...prep.cellArgs.map((t, a) => `${t.type}[${dims(t.dims, padding?.args[a] === true)}]`),
  ].join('|');
}
