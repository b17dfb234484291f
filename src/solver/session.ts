import type { ResolvedSolverOptions, SolverSettings } from './types.js';
import type { SolverWorkspace } from './workspace.js';
import { allFinite, copyRow } from './vec.js';
import { broydenNext, broydenStart } from './broyden.js';
import { andersonNext } from './anderson.js';
import { fixedPointNext } from './fixed-point.js';
import { andersonNextWasm, broydenNextWasm, broydenStartWasm, fixedPointNextWasm } from './wasm-steps.js';

/**
 * What each row decides for itself: a request's settings but the method, which the session's
 * rows share. A row's `trace` defaults to the session's; the label margin `predictionMargin`
 * reads is written by the caller with the label.
 */
export interface RowOptions extends Omit<SolverSettings, 'method'> {
  /** Keep the row's label per evaluation too (the caller labels its iterates). */
  traceLabels?: boolean;
}

/** How a row's solve ended. */
export const enum RowEnd { Running = 0, Converged = 1, Capped = 2, Diverged = 3, Evicted = 4, Predicted = 5 }

/** The wire name of each RowEnd: why a sample stopped (Running: the solve was stopped from outside). */
export const STOP_REASONS = Object.freeze(['deadline', 'converged', 'max_iter', 'diverged', 'deadline', 'prediction'] as const);
export type StopReason = (typeof STOP_REASONS)[number];

/**
 * A fixed-point solve whose rows come and go: the resumable form of `solve()`.
 *
 * Each row of the workspace is a slot. `admit` starts a sample in a free slot at
 * any iteration boundary; after the caller evaluates f on the active rows
 * (`ws.z` → `ws.fz`), `advance` scores each active row, stops the ones that are
 * done and takes every other row's next step. A row's arithmetic never reads
 * another row, so a sample's iterates do not depend on its company: this is
 * what lets requests join a running batch (continuous batching).
 */
export class SolveSession {
  readonly ws: SolverWorkspace;
  readonly opts: ResolvedSolverOptions;
  /** Evaluations of f per row since admission. */
  readonly iterations: Int32Array;
  /** Lowest residual so far (in the row's stop mode). */
  readonly residual: Float64Array;
  readonly converged: Uint8Array;
  readonly diverged: Uint8Array;
  /** How each row ended (RowEnd.Running while it runs). */
  readonly end: Uint8Array;
  /** Rows that ended during the last `advance` (indices in `ended[0 … endedCount)`). */
  readonly ended: Int32Array;
  endedCount = 0;
  /** Per-row residual after each evaluation, when the row asked for a trace (allocates per row). */
  readonly trace: (Float64Array | null)[];
  /** Per-row label after each evaluation, when the row asked for `traceLabels`. */
  readonly traceLabels: (Int32Array | null)[];
  /**
   * The label of each row's current iterate: written by the caller before `advance` for the
   * rows `predictionMask()` lists (e.g. the head's top-1 on ws.z).
   */
  readonly prediction: Int32Array;
  /** How sure the caller is of each label (a classifier's softmax margin), written with `prediction`. */
  readonly predictionMargin: Float64Array;
  readonly #patience: Int32Array;
  readonly #predictionTol: Float64Array;
  readonly #minMargin: Float64Array;
  /** Iterations in a row the label has not changed. */
  readonly #streak: Int32Array;
  readonly #lastLabel: Int32Array;
  /** Rows that need a label per iteration (early exit or label trace), and the mask handed out. */
  readonly #wantsLabel: Uint8Array;
  readonly #mask: Uint8Array;
  readonly #tol: Float64Array;
  readonly #maxIter: Int32Array;
  readonly #rel: Uint8Array;
  readonly #first: Uint8Array;
  /** JS kernel: the best iterate per row (the wasm kernel keeps it in its own memory). */
  readonly #best: Float32Array | null;
  #residualNow = 0;

  constructor(ws: SolverWorkspace, opts: ResolvedSolverOptions) {
    if (ws.method !== opts.method || ws.history !== opts.history) throw new RangeError(`workspace is for ${ws.method}/m=${ws.history}, options ask for ${opts.method}/m=${opts.history}`);
    const b = ws.batch;
    this.ws = ws;
    this.opts = opts;
    this.iterations = new Int32Array(b);
    this.residual = new Float64Array(b);
    this.converged = new Uint8Array(b);
    this.diverged = new Uint8Array(b);
    this.end = new Uint8Array(b);
    this.ended = new Int32Array(b);
    this.trace = new Array(b).fill(null);
    this.traceLabels = new Array(b).fill(null);
    this.prediction = new Int32Array(b);
    this.predictionMargin = new Float64Array(b);
    this.#patience = new Int32Array(b);
    this.#predictionTol = new Float64Array(b);
    this.#minMargin = new Float64Array(b);
    this.#streak = new Int32Array(b);
    this.#lastLabel = new Int32Array(b);
    this.#wantsLabel = new Uint8Array(b);
    this.#mask = new Uint8Array(b);
    this.#tol = new Float64Array(b);
    this.#maxIter = new Int32Array(b);
    this.#rel = new Uint8Array(b);
    this.#first = new Uint8Array(b);
    this.#best = ws.wasm ? null : new Float32Array(b * ws.n);
    ws.active.fill(0);
  }

  get capacity(): number {
    return this.ws.batch;
  }

  /** Active rows now. */
  get activeCount(): number {
    let c = 0;
    for (let i = 0; i < this.ws.batch; i++) c += this.ws.active[i];
    return c;
  }

  /** The first slot not running, or −1. */
  freeSlot(): number {
    return this.ws.active.indexOf(0);
  }

  /** Starts a sample in `slot` from `z0` (zeros when left out). */
  admit(slot: number, row: RowOptions, z0?: Float32Array): void {
    const { ws } = this;
    const n = ws.n, o = slot * n;
    if (ws.active[slot]) throw new RangeError(`slot ${slot} is running`);
    if (z0) ws.z.set(z0.subarray(0, n), o);
    else ws.z.fill(0, o, o + n);
    this.bestRow(slot).set(ws.z.subarray(o, o + n));
    this.iterations[slot] = 0;
    this.residual[slot] = Infinity;
    this.converged[slot] = 0;
    this.diverged[slot] = 0;
    this.end[slot] = RowEnd.Running;
    this.#tol[slot] = row.tol;
    this.#maxIter[slot] = row.maxIter;
    this.#rel[slot] = row.stopMode === 'rel' ? 1 : 0;
    this.#first[slot] = 1;
    ws.count[slot] = 0;
    ws.head[slot] = 0;
    ws.alpha[slot] = 1;
    ws.restart[slot] = 0;
    const patience = row.patience ?? 0;
    this.#patience[slot] = patience;
    this.#predictionTol[slot] = row.predictionTol ?? this.opts.predictionTol;
    this.#minMargin[slot] = row.predictionMargin ?? this.opts.predictionMargin;
    this.#streak[slot] = 0;
    this.#lastLabel[slot] = -1;
    const trace = row.trace ?? this.opts.trace;
    this.trace[slot] = trace ? new Float64Array(row.maxIter) : null;
    this.traceLabels[slot] = trace && row.traceLabels ? new Int32Array(row.maxIter) : null;
    this.#wantsLabel[slot] = patience > 0 || this.traceLabels[slot] !== null ? 1 : 0;
    ws.active[slot] = 1;
  }

  /**
   * The active rows whose current iterate needs a label before the next `advance`
   * (the caller writes `prediction` for them), or null when none does.
   */
  predictionMask(): Uint8Array | null {
    const { active } = this.ws;
    let any = 0;
    for (let i = 0; i < this.ws.batch; i++) any |= this.#mask[i] = active[i] & this.#wantsLabel[i];
    return any ? this.#mask : null;
  }

  /** Stops a running row where it is (deadline, client gone); its best iterate stays readable. */
  evict(slot: number): void {
    if (!this.ws.active[slot]) return;
    this.ws.active[slot] = 0;
    this.end[slot] = RowEnd.Evicted;
  }

  /** The lowest-residual iterate of a row (a view; valid until the slot is admitted again). */
  bestRow(slot: number): Float32Array {
    const n = this.ws.n;
    const all = this.#best ?? this.ws.wasm!.zBestView;
    return all.subarray(slot * n, (slot + 1) * n);
  }

  /**
   * Consumes the evaluation f(z) of every active row: scores it, ends rows that
   * converged, diverged or reached their cap (listed in `ended`), and writes the
   * next iterate of the others into `ws.z`.
   */
  advance(): void {
    const { ws, opts } = this;
    this.endedCount = 0;
    for (let i = 0; i < ws.batch; i++) {
      if (!ws.active[i]) continue;
      const end = this.#measure(i);
      if (end !== RowEnd.Running) {
        this.#finish(i, end);
        continue;
      }
      const first = this.#first[i] === 1;
      this.#first[i] = 0;
      const restarting = ws.restart[i] === 1;
      ws.restart[i] = 0;
      if (opts.method !== 'fixed-point' && !first && !restarting && this.#residualNow > opts.restartFactor * this.residual[i]) {
        // Climbing away from the best point: drop the history, go back to the best iterate.
        ws.count[i] = 0;
        ws.head[i] = 0;
        ws.restart[i] = 1;
        ws.z.set(this.bestRow(i), i * ws.n);
        continue;
      }
      if (!this.#step(i, first || restarting)) this.#finish(i, RowEnd.Diverged);
    }
  }

  #finish(i: number, end: RowEnd): void {
    this.ws.active[i] = 0;
    this.end[i] = end;
    if (end === RowEnd.Converged) this.converged[i] = 1;
    if (end === RowEnd.Diverged) this.diverged[i] = 1;
    this.ended[this.endedCount++] = i;
  }

  // One step of the method for row i; false when the new iterate is not finite
  // (e.g. a singular step), in which case the best iterate is kept.
  #step(i: number, start: boolean): boolean {
    const { ws, opts } = this;
    if (ws.wasm) {
      let zsum: number;
      switch (opts.method) {
        case 'broyden': zsum = start ? broydenStartWasm(ws, i) : broydenNextWasm(ws, i, opts.lineSearch); break;
        case 'anderson': zsum = andersonNextWasm(ws, i, opts.andersonLambda, opts.andersonBeta); break;
        case 'fixed-point': zsum = fixedPointNextWasm(ws, i, opts.damping); break;
      }
      return Number.isFinite(zsum);
    }
    switch (opts.method) {
      case 'broyden':
        if (start) broydenStart(ws, i);
        else broydenNext(ws, i, opts.lineSearch);
        break;
      case 'anderson':
        andersonNext(ws, i, opts.andersonLambda, opts.andersonBeta);
        break;
      case 'fixed-point':
        fixedPointNext(ws, i, opts.damping);
        break;
    }
    return allFinite(ws.z, i * ws.n, ws.n);
  }

  // Scores the evaluation just made for row i; keeps its best iterate.
  #measure(i: number): RowEnd {
    const { ws } = this;
    const n = ws.n, o = i * n;
    const it = ++this.iterations[i];
    let fNorm: number;
    const w = ws.wasm;
    if (w) {
      w.k.residual(w.z + 4 * o, w.fz + 4 * o, w.g + 4 * o, n, w.out);
      ws.gNorm[i] = Math.sqrt(w.outView[0]);
      fNorm = Math.sqrt(w.outView[1]);
    } else {
      fNorm = residualRow(ws.z, ws.fz, ws.g, o, n, ws.gNorm, i);
    }
    const abs = ws.gNorm[i];
    const r = this.#rel[i] ? abs / (fNorm + 1e-9) : abs;
    this.#residualNow = r;
    const t = this.trace[i];
    if (t) t[it - 1] = r;
    let stable = false;
    if (this.#wantsLabel[i]) {
      const label = this.prediction[i];
      const tl = this.traceLabels[i];
      if (tl) tl[it - 1] = label;
      this.#streak[i] = it > 1 && label === this.#lastLabel[i] ? this.#streak[i] + 1 : 0;
      this.#lastLabel[i] = label;
      const k = this.#patience[i];
      stable = k > 0 && this.#streak[i] >= k && r < this.#predictionTol[i] && this.predictionMargin[i] >= this.#minMargin[i];
    }
    if (!Number.isFinite(r)) return RowEnd.Diverged;
    if (it === 1) ws.abs0[i] = abs;
    if (r < this.residual[i]) {
      this.residual[i] = r;
      if (w) w.k.copy(w.zBest + 4 * o, w.z + 4 * o, 4 * n);
      else copyRow(ws.z, o, this.#best!, o, n);
    }
    if (r < this.#tol[i]) return RowEnd.Converged;
    if (stable) {
      // The answer is the iterate whose label was judged stable, not an earlier lower-residual one.
      this.residual[i] = r;
      if (w) w.k.copy(w.zBest + 4 * o, w.z + 4 * o, 4 * n);
      else copyRow(ws.z, o, this.#best!, o, n);
      return RowEnd.Predicted;
    }
    if (abs > this.opts.divergenceFactor * Math.max(ws.abs0[i], 1e-12)) return RowEnd.Diverged;
    return it >= this.#maxIter[i] ? RowEnd.Capped : RowEnd.Running;
  }
}

// g = f(z) − z for one row; stores ‖g‖ in gNorm[i] and returns ‖f(z)‖. A module-level
// function rather than a closure: V8 keeps it monomorphic, and it measured 3× faster
// per element than the closure on the Fashion-MNIST cell (n = 6272).
function residualRow(z: Float32Array, fz: Float32Array, g: Float32Array, o: number, n: number, gNorm: Float64Array, i: number): number {
  let gg = 0, ff = 0;
  for (let k = o, end = o + n; k < end; k++) {
    const fk = fz[k];
    const gk = fk - z[k];
    g[k] = gk;
    gg += gk * gk;
    ff += fk * fk;
  }
  gNorm[i] = Math.sqrt(gg);
  return Math.sqrt(ff);
}
