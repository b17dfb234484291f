import type { SolverMethod } from './types.js';

/**
 * Every buffer a solve needs, allocated once. Sizes depend on the batch,
 * the state size n and the history m — never on maxIter, so memory stays
 * constant however many iterations a caller allows.
 */
export class SolverWorkspace {
  readonly method: SolverMethod;
  readonly batch: number;
  readonly n: number;
  readonly history: number;
  /** Current iterate, batch × n. */
  readonly z: Float32Array;
  /** f(z), batch × n. */
  readonly fz: Float32Array;
  /** g = f(z) − z at the current iterate. */
  readonly g: Float32Array;
  /** Previous accepted iterate and its g (Broyden). */
  readonly zPrev: Float32Array;
  readonly gPrev: Float32Array;
  /** Broyden step direction p = −J⁻¹g. */
  readonly p: Float32Array;
  /** Broyden low-rank factors (J⁻¹ ≈ −I + U Vᵀ) or Anderson X/F histories, batch × m × n. */
  readonly histA: Float32Array;
  readonly histB: Float32Array;
  /** Two scratch rows of n, shared across samples. */
  readonly scratch: Float64Array;
  /** Anderson Gram matrices, batch × m × m; small-system scratch. */
  readonly gram: Float64Array;
  readonly system: Float64Array;
  readonly coeff: Float64Array;
  /** Per-sample bookkeeping. */
  readonly count: Int32Array;
  readonly head: Int32Array;
  readonly alpha: Float64Array;
  readonly resPrev: Float64Array;
  /** ‖g‖₂ at the current iterate, computed once per evaluation by the driver. */
  readonly gNorm: Float64Array;
  readonly active: Uint8Array;
  /** 1 while a sample restarts from its best iterate (its history was cleared). */
  readonly restart: Uint8Array;
  readonly abs0: Float64Array;

  constructor(method: SolverMethod, batch: number, n: number, history: number) {
    if (!(batch >= 1 && n >= 1 && history >= 1)) throw new RangeError(`workspace needs batch, n, history ≥ 1 (got ${batch}, ${n}, ${history})`);
    this.method = method;
    this.batch = batch;
    this.n = n;
    this.history = history;
    const bn = batch * n;
    const usesHistory = method !== 'fixed-point';
    const m = usesHistory ? history : 0;
    this.z = new Float32Array(bn);
    this.fz = new Float32Array(bn);
    this.g = new Float32Array(bn);
    this.zPrev = new Float32Array(method === 'broyden' ? bn : 0);
    this.gPrev = new Float32Array(method === 'broyden' ? bn : 0);
    this.p = new Float32Array(method === 'broyden' ? bn : 0);
    this.histA = new Float32Array(batch * m * n);
    this.histB = new Float32Array(batch * m * n);
    this.scratch = new Float64Array(usesHistory ? 2 * n : 0);
    this.gram = new Float64Array(method === 'anderson' ? batch * m * m : 0);
    this.system = new Float64Array(method === 'anderson' ? (m + 1) * (m + 2) : 0);
    this.coeff = new Float64Array(usesHistory ? m + 1 : 0);
    this.count = new Int32Array(batch);
    this.head = new Int32Array(batch);
    this.alpha = new Float64Array(batch);
    this.resPrev = new Float64Array(batch);
    this.gNorm = new Float64Array(batch);
    this.active = new Uint8Array(batch);
    this.restart = new Uint8Array(batch);
    this.abs0 = new Float64Array(batch);
  }

  /** Total bytes held by the workspace's buffers. */
  get byteLength(): number {
    let total = 0;
    for (const v of Object.values(this)) {
      if (ArrayBuffer.isView(v)) total += v.byteLength;
    }
    return total;
  }

  /** True if this workspace can serve a solve of this shape. */
  fits(method: SolverMethod, batch: number, n: number, history: number): boolean {
    return this.method === method && this.batch === batch && this.n === n && this.history === history;
  }
}
