// Scheduler, the batching executor of one model: it takes requests, runs the loop that gives
// each shared solve its turns (one iteration each), stops rows at deadlines, cancellation and
// shutdown, and hands finished requests to be answered. Its settings are scheduler-options.ts,
// its row bookkeeping solve-group.ts, its admission policy row-admission.ts, its answers answer-jobs.ts.
// It sees a request as DeqModel.plan gives it (solve-plan.ts), never its tensors.
import { DeqError } from '../errors.js';
import type { Executor, ExecutorRequest, ExecutorResult } from './executor.js';
import type { DeqModel } from './deq-model.js';
import { schedulerOptions, type SchedulerHooks, type SchedulerOptions } from './scheduler-options.js';
import { admitRow, collectRow, jobPlanned, openGroup, type Group, type Job } from './solve-group.js';
import { admitWaiting } from './row-admission.js';
import { answerJobs } from './answer-jobs.js';

export { SCHEDULER_DEFAULTS } from './scheduler-options.js';
export type { BatchingMode, SchedulerHooks, SchedulerOptions } from './scheduler-options.js';

/** Shapes (e.g. language-model window lengths) whose solve buffers are kept while idle (measured: 16 beat 4 on Brown sentences). */
const MAX_IDLE_GROUPS = 16;

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
    this.model = model;
    this.options = schedulerOptions(options);
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
        id, req, submittedAt: performance.now(), plan: null, prepMs: 0, pending: [], active: 0, done: 0, admittedAt: 0,
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
    this.model.plan(job.req).then((plan) => {
      job.prepMs = performance.now() - t0;
      jobPlanned(job, plan, this.model);
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
      const waiting = admitWaiting(this.#jobs.values(), this.#groups, this.options, (key, job) => this.#group(key, job), (g, job, row, slot) => this.#admitRow(g, job, row, slot));
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
      if ([...this.#jobs.values()].some((j) => j.plan === null)) {
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
      const plan = job.plan;
      if (!plan) continue;
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
      if (this.options.mode === 'static') this.#groups.get(plan.key)?.batch.delete(job);
      void this.#answer([job]);
    }
  }

  #admitRow(g: Group, job: Job, row: number, slot: number): void {
    admitRow(g, job, row, slot, this.model.canLabel);
    if (this.options.mode === 'static') g.batch.add(job);
  }

  #group(key: string, job: Job): Group {
    const g = openGroup(key, job, this.model, this.options.maxRows);
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
      g.labeler ??= this.model.labeler(g.slotJob.find((j) => j !== null)!.plan!.prepared, cells.capacity);
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

  // A row left its slot: collectRow, and its iterations join this scheduler's running average.
  #collect(g: Group, s: number): void {
    const iterations = collectRow(g, s);
    if (iterations >= 0) this.#meanIterations += (iterations - this.#meanIterations) * (this.#meanIterations === 0 ? 1 : 0.1);
  }

  // Answers requests whose rows have all stopped, each once: those still on the books. Not
  // async, so answering takes no extra microtask turn (scheduler.test.ts's mid-solve joins are timed in turns).
  #answer(jobs: readonly Job[]): Promise<void> {
    return answerJobs(this.model, jobs.filter((job) => this.#jobs.delete(job.id)));
  }

  #failAll(err: Error): void {
    for (const job of this.#jobs.values()) job.reject(err);
    this.#jobs.clear();
    for (const g of this.#groups.values()) {
      for (let s = 0; s < g.slotJob.length; s++) { g.session.evict(s); g.slotJob[s] = null; }
    }
  }
}
