// The limited-memory Broyden solver's vector work as ONNX graphs, so a solve can keep
// its state (z, the last step, the low-rank factors U, V, the best iterate) where the
// cell runs: on a GPU provider nothing but a few numbers per sample crosses to the host
// per iteration. The arithmetic is src/solver/broyden.ts's (no line search), written
// with masks instead of branches; runtime/device-solve.ts drives it and keeps the
// per-sample decisions (stop, restart, best iterate) on the host.
import { encodeModel, type Initializer, type NodeSpec, type ValueSpec } from './onnx-proto.js';

/** Per-sample step modes the host sends each iteration. */
export const MODE = { frozen: 0, start: 1, next: 2, restart: 3 } as const;

/** Names of the step graph's state inputs; each has a matching output `<name>_out`. */
export const STEP_STATE = ['z', 'z_prev', 'g_prev', 'z_best', 'u_hist', 'v_hist', 'slot', 'valid'] as const;
export type StepState = (typeof STEP_STATE)[number];

// Smallest |vᵀΔg| for an update and the float32 overflow bound: src/solver/broyden.ts's MIN_DENOMINATOR and Number.isFinite on stored values.
const MIN_DENOMINATOR = 1e-30;
const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * measure(z, fz) → g = fz − z (same shape), and norms [B, 3]: Σg², Σfz², and Σ(z − z),
 * which is 0 when every value of z is finite and NaN otherwise (the host's check of the last step).
 */
export function measureGraph(tail: readonly number[]): Uint8Array {
  const n = tail.reduce((a, b) => a * b, 1);
  const b = new GraphBuilder();
  const flat = b.const64('flat', [-1, n]);
  const ax1 = b.const64('ax1', [1]);
  const zf = b.op('Reshape', ['z', flat]);
  const g = b.op('Sub', ['fz', 'z'], undefined, 'g');
  const gf = b.op('Reshape', [g, flat]);
  const ff = b.op('Reshape', ['fz', flat]);
  const gg = b.op('ReduceSum', [b.op('Mul', [gf, gf]), ax1], { keepdims: 1 });
  const fsq = b.op('ReduceSum', [b.op('Mul', [ff, ff]), ax1], { keepdims: 1 });
  const zz = b.op('ReduceSum', [b.op('Sub', [zf, zf]), ax1], { keepdims: 1 });
  b.op('Concat', [gg, fsq, zz], { axis: 1 }, 'norms');
  const state: ValueSpec = { name: 'z', dtype: 'float32', shape: ['B', ...tail] };
  return b.model('deq_measure',
    [state, { ...state, name: 'fz' }],
    [{ ...state, name: 'g' }, { name: 'norms', dtype: 'float32', shape: ['B', 3] }]);
}

/**
 * One Broyden iteration for every sample, by mode (MODE): frozen rows keep everything;
 * `start` takes the first step z ← z + g (J⁻¹ = −I); `next` applies the good-Broyden
 * rank-one update in the ring slot and steps; `restart` goes back to the best iterate
 * with the history cleared. `improve` = 1 records z as the best iterate first.
 */
export function stepGraph(tail: readonly number[], m: number): Uint8Array {
  const n = tail.reduce((a, b) => a * b, 1);
  const b = new GraphBuilder();
  const flat = b.const64('flat', [-1, n]);
  const col = b.const64('col', [-1, n, 1]);
  const row = b.const64('row', [-1, 1, n]);
  const hrow = b.const64('hrow', [-1, 1, m]);
  const hcol = b.const64('hcol', [-1, m, 1]);
  const hflat = b.const64('hflat', [-1, m]);
  const back = b.const64('back', [-1, ...tail]);
  const ax1 = b.const64('ax1', [1]);
  const one = b.constF('one', 1), zero = b.constF('zero', 0);
  const minDen = b.constF('min_den', MIN_DENOMINATOR), fmax = b.constF('fmax', FLOAT32_MAX);
  const sum1 = (x: string) => b.op('ReduceSum', [x, ax1], { keepdims: 1 });
  const finite = (x: string) => b.op('Less', [b.op('Abs', [x]), fmax]);
  const modeIs = (k: number) => b.op('Equal', ['mode', b.constF(`mode_${k}`, k)]);

  const z = b.op('Reshape', ['z', flat]), g = b.op('Reshape', ['g', flat]);
  const zPrev = b.op('Reshape', ['z_prev', flat]), gPrev = b.op('Reshape', ['g_prev', flat]);
  const zBestIn = b.op('Reshape', ['z_best', flat]);
  const U = 'u_hist', V = 'v_hist', slot = 'slot', valid = 'valid';

  // The best iterate first: a row that improved keeps this z, whatever it does next.
  const zBest = b.op('Where', [b.op('Equal', ['improve', one]), z, zBestIn]);

  // t = −Δz + V(UᵀΔz) over the filled slots; q = g − U(Vᵀg) without the slot about to be replaced.
  const dz = b.op('Sub', [z, zPrev]);
  const bu = b.op('Reshape', [b.op('MatMul', [U, b.op('Reshape', [dz, col])]), hflat]);
  const cv = b.op('Reshape', [b.op('MatMul', [V, b.op('Reshape', [g, col])]), hflat]);
  const replacing = b.op('ReduceMin', [valid], { axes: [1], keepdims: 1 });
  const t = b.op('Sub', [b.op('Reshape', [b.op('MatMul', [b.op('Reshape', [b.op('Mul', [bu, valid]), hrow]), V]), flat]), dz]);
  const keep = b.op('Sub', [one, b.op('Mul', [replacing, slot])]);
  const cq = b.op('Mul', [b.op('Mul', [cv, valid]), keep]);
  const q = b.op('Sub', [g, b.op('Reshape', [b.op('MatMul', [b.op('Reshape', [cq, hrow]), U]), flat])]);
  const den = sum1(b.op('Mul', [t, b.op('Sub', [g, gPrev])]));
  const cSlot = sum1(b.op('Mul', [slot, cv]));
  const uSlot = b.op('Reshape', [b.op('MatMul', [b.op('Reshape', [slot, hrow]), U]), flat]);

  // u = (q − c_old·U_slot) / den (α = 1, so Δz(1 − 1/α) vanishes); v = t.
  const u = b.op('Div', [b.op('Sub', [q, b.op('Mul', [b.op('Mul', [replacing, cSlot]), uSlot])]), den]);
  const okDen = b.op('And', [b.op('Greater', [b.op('Abs', [den]), minDen]), finite(den)]);
  const vg = sum1(b.op('Mul', [t, g]));
  const okStore = b.op('And', [okDen, b.op('And', [finite(sum1(b.op('Add', [u, t]))), finite(vg)])]);
  const newU = b.op('Where', [okStore, u, zero]);
  const newV = b.op('Where', [okStore, t, zero]);
  const w = b.op('Reshape', [b.op('Mul', [b.op('Cast', [okDen], { to: 1 }), slot]), hcol]);
  const keepRows = b.op('Sub', [one, w]);
  const uNext = b.op('Add', [b.op('Mul', [U, keepRows]), b.op('Mul', [w, b.op('Reshape', [newU, row])])]);
  const vNext = b.op('Add', [b.op('Mul', [V, keepRows]), b.op('Mul', [w, b.op('Reshape', [newV, row])])]);
  const uSlotAfter = b.op('Where', [okDen, newU, uSlot]);
  const skippedReplacing = b.op('And', [b.op('Not', [okDen]), b.op('Equal', [replacing, one])]);
  const tailCoef = b.op('Where', [okStore, vg, b.op('Where', [skippedReplacing, cSlot, zero])]);
  const zNext = b.op('Add', [z, b.op('Sub', [q, b.op('Mul', [tailCoef, uSlotAfter])])]);
  const rolled = m === 1 ? slot : b.op('Concat', [
    b.op('Slice', [slot, b.const64('s_from', [m - 1]), b.const64('s_to', [m]), ax1]),
    b.op('Slice', [slot, b.const64('s_zero', [0]), b.const64('s_last', [m - 1]), ax1]),
  ], { axis: 1 });
  const slotNext = b.op('Where', [okStore, rolled, slot]);
  const validNext = b.op('Where', [okStore, b.op('Max', [valid, slot]), valid]);

  // Select per row by mode.
  const isStart = modeIs(1), isNext = modeIs(2), isRestart = modeIs(3);
  const isStep = b.op('Or', [isStart, isNext]);
  const isNext3 = b.op('Reshape', [isNext, b.const64('b11', [-1, 1, 1])]);
  const slot0 = b.constF('slot0', [1, ...new Array<number>(m - 1).fill(0)], [1, m]);
  const zOut = b.op('Where', [isNext, zNext, b.op('Where', [isStart, b.op('Add', [z, g]), b.op('Where', [isRestart, zBest, z])])]);
  b.op('Reshape', [zOut, back], undefined, 'z_out');
  b.op('Reshape', [b.op('Where', [isStep, z, zPrev]), back], undefined, 'z_prev_out');
  b.op('Reshape', [b.op('Where', [isStep, g, gPrev]), back], undefined, 'g_prev_out');
  b.op('Reshape', [zBest, back], undefined, 'z_best_out');
  b.op('Where', [isNext3, uNext, U], undefined, 'u_hist_out');
  b.op('Where', [isNext3, vNext, V], undefined, 'v_hist_out');
  b.op('Where', [isNext, slotNext, b.op('Where', [isRestart, slot0, slot])], undefined, 'slot_out');
  b.op('Where', [isNext, validNext, b.op('Where', [isRestart, zero, valid])], undefined, 'valid_out');

  const state: ValueSpec = { name: 'z', dtype: 'float32', shape: ['B', ...tail] };
  const hist: ValueSpec = { name: 'u_hist', dtype: 'float32', shape: ['B', m, n] };
  const ring: ValueSpec = { name: 'slot', dtype: 'float32', shape: ['B', m] };
  const perRow: ValueSpec = { name: 'mode', dtype: 'float32', shape: ['B', 1] };
  const specOf = (name: StepState): ValueSpec => (name === 'u_hist' || name === 'v_hist' ? { ...hist, name } : name === 'slot' || name === 'valid' ? { ...ring, name } : { ...state, name });
  return b.model('deq_broyden_step',
    [...STEP_STATE.map(specOf), { ...state, name: 'g' }, perRow, { ...perRow, name: 'improve' }],
    STEP_STATE.map((s) => ({ ...specOf(s), name: `${s}_out` })));
}

/** readback(x) = x, for a session whose output lives on the host: the solve's last copy back. */
export function readbackGraph(tail: readonly number[]): Uint8Array {
  const b = new GraphBuilder();
  b.op('Identity', ['x'], undefined, 'y');
  const spec: ValueSpec = { name: 'x', dtype: 'float32', shape: ['B', ...tail] };
  return b.model('deq_readback', [spec], [{ ...spec, name: 'y' }]);
}

// Node and constant bookkeeping for the graphs above.
class GraphBuilder {
  readonly #nodes: NodeSpec[] = [];
  readonly #inits: Initializer[] = [];
  #next = 0;

  op(op: string, inputs: readonly string[], attrs?: NodeSpec['attrs'], output?: string): string {
    const out = output ?? `${op.toLowerCase()}_${this.#next++}`;
    this.#nodes.push({ op, inputs, outputs: [out], attrs });
    return out;
  }

  const64(name: string, values: readonly number[]): string {
    this.#inits.push({ name, dtype: 'int64', dims: [values.length], values });
    return name;
  }

  constF(name: string, value: number | readonly number[], dims?: readonly number[]): string {
    const values = typeof value === 'number' ? [value] : value;
    this.#inits.push({ name, dtype: 'float32', dims: dims ?? (typeof value === 'number' ? [] : [values.length]), values });
    return name;
  }

  model(name: string, inputs: readonly ValueSpec[], outputs: readonly ValueSpec[]): Uint8Array {
    return encodeModel({ name, inputs, outputs, nodes: this.#nodes, initializers: this.#inits, opset: 17 });
  }
}
