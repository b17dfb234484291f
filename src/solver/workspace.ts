import type { SolverMethod } from './types.js';
import { instantiateKernels, kernelModule, type KernelExports } from './wasm-kernels.js';

/**
 * Where a workspace's row algebra runs. `js`: the scalar TypeScript reference.
 * `wasm`: WebAssembly SIMD kernels over the same buffers, laid out in a
 * WebAssembly memory, with the reference's float64 arithmetic (same iterates up
 * to the order of additions). `wasm-f32`: the same kernels in float32 arithmetic,
 * faster, with iterates that agree to float32 rounding amplified by the solve's
 * conditioning (docs/solver.md has the measurements behind the default).
 */
export type SolverKernel = 'js' | 'wasm' | 'wasm-f32';

/** Every kernel, for option parsing. */
export const SOLVER_KERNELS: readonly SolverKernel[] = ['js', 'wasm', 'wasm-f32'];

/** The kernel new workspaces get unless told otherwise: wasm when it loads, else js. */
export function defaultSolverKernel(): SolverKernel {
  return kernelModule() ? 'wasm' : 'js';
}

/** The fastest kernel that loads for an arithmetic: float32 → wasm-f32; float64 → the default. */
export function kernelForPrecision(precision: 'float64' | 'float32'): SolverKernel {
  return precision === 'float32' && kernelModule('f32') ? 'wasm-f32' : defaultSolverKernel();
}

/** Byte offsets of the wasm workspace's buffers in its memory, and the kernels bound to it. */
export interface WasmState {
  readonly k: KernelExports;
  readonly z: number;
  readonly fz: number;
  readonly g: number;
  readonly zPrev: number;
  readonly gPrev: number;
  readonly p: number;
  readonly zBest: number;
  readonly histA: number;
  readonly histB: number;
  readonly scratch: number;
  /** Kernel results (a few float64). */
  readonly out: number;
  /** The float32 kernel module (coefficients from coef32, not coef). */
  readonly f32: boolean;
  /** Per-update coefficients handed to kernels (2·m float64), and their float32 copy. */
  readonly coef: number;
  readonly coef32: number;
  readonly outView: Float64Array;
  readonly coefView: Float64Array;
  readonly coef32View: Float32Array;
  /** Lowest-residual iterate per sample, batch × n (the JS kernel keeps it in the caller's z). */
  readonly zBestView: Float32Array;
}

// Page 0 is left to the kernel module's own data; buffers start on page 1, 16-byte aligned.
const WASM_BASE = 65536;
const MAX_WASM_BYTES = 2 ** 32 - 65536;

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
  /** The kernel in use: 'wasm'/'wasm-f32' fall back to 'js' when their memory cannot be had (over 4 GiB, or refused). */
  readonly kernel: SolverKernel;
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
  /** Set for the wasm kernel: offsets and bound kernels. */
  readonly wasm: WasmState | null;

  constructor(method: SolverMethod, batch: number, n: number, history: number, kernel: SolverKernel = defaultSolverKernel()) {
    if (!(batch >= 1 && n >= 1 && history >= 1)) throw new RangeError(`workspace needs batch, n, history ≥ 1 (got ${batch}, ${n}, ${history})`);
    this.method = method;
    this.batch = batch;
    this.n = n;
    this.history = history;
    const bn = batch * n;
    const usesHistory = method !== 'fixed-point';
    const m = usesHistory ? history : 0;
    const broyden = method === 'broyden';
    const sizes = {
      z: bn * 4, fz: bn * 4, g: bn * 4,
      zPrev: broyden ? bn * 4 : 0, gPrev: broyden ? bn * 4 : 0, p: broyden ? bn * 4 : 0,
      histA: batch * m * n * 4, histB: batch * m * n * 4,
      scratch: usesHistory ? 2 * n * 8 : 0,
    };
    let alloc: (name: keyof typeof sizes) => ArrayBuffer | [ArrayBuffer, number];
    let wasm: WasmState | null = null;
    const offsets: Record<string, number> = {};
    let at = WASM_BASE;
    const take = (bytes: number) => { const o = at; at += Math.ceil(bytes / 16) * 16; return o; };
    const out = take(16 * 8), coef = take(Math.max(2 * m, 1) * 8), coef32 = take(Math.max(2 * m, 1) * 4), zBest = take(bn * 4);
    for (const [name, bytes] of Object.entries(sizes)) offsets[name] = take(bytes);
    let bound: ReturnType<typeof instantiateKernels> | null = null;
    if (kernel !== 'js') {
      // A 32-bit wasm memory holds at most 4 GiB, and the engine may refuse less: such a
      // workspace falls back to the js kernel (same results, slower) instead of failing the solve.
      try {
        if (at <= MAX_WASM_BYTES) bound = instantiateKernels(at, kernel === 'wasm-f32' ? 'f32' : 'f64');
      } catch {
        bound = null;
      }
    }
    this.kernel = bound ? kernel : 'js';
    if (bound) {
      const { buffer: buf, kernels } = bound;
      alloc = (name) => [buf, offsets[name]];
      wasm = {
        k: kernels, f32: kernel === 'wasm-f32',
        z: offsets.z, fz: offsets.fz, g: offsets.g, zPrev: offsets.zPrev, gPrev: offsets.gPrev, p: offsets.p,
        zBest, histA: offsets.histA, histB: offsets.histB, scratch: offsets.scratch, out, coef, coef32,
        outView: new Float64Array(buf, out, 16),
        coefView: new Float64Array(buf, coef, Math.max(2 * m, 1)),
        coef32View: new Float32Array(buf, coef32, Math.max(2 * m, 1)),
        zBestView: new Float32Array(buf, zBest, bn),
      };
    } else {
      alloc = (name) => new ArrayBuffer(sizes[name]);
    }
    const f32 = (name: keyof typeof sizes) => {
      const a = alloc(name);
      return Array.isArray(a) ? new Float32Array(a[0], a[1], sizes[name] / 4) : new Float32Array(a);
    };
    this.z = f32('z');
    this.fz = f32('fz');
    this.g = f32('g');
    this.zPrev = f32('zPrev');
    this.gPrev = f32('gPrev');
    this.p = f32('p');
    this.histA = f32('histA');
    this.histB = f32('histB');
    const s = alloc('scratch');
    this.scratch = Array.isArray(s) ? new Float64Array(s[0], s[1], sizes.scratch / 8) : new Float64Array(s);
    this.wasm = wasm;
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

  /** Total bytes held by the workspace's buffers (for wasm, its whole memory). */
  get byteLength(): number {
    let total = 0;
    for (const v of Object.values(this)) {
      if (ArrayBuffer.isView(v) && !(this.wasm && v.buffer === this.z.buffer)) total += v.byteLength;
    }
    if (this.wasm) total += this.z.buffer.byteLength;
    return total;
  }

  /** True if this workspace can serve a solve of this shape. */
  fits(method: SolverMethod, batch: number, n: number, history: number): boolean {
    return this.method === method && this.batch === batch && this.n === n && this.history === history;
  }
}
