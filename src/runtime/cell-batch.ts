import { openPrepared } from './infer-types.js';
import { createTensor, type OnnxGraph, type Tensor } from './onnx.js';
import type { PreparedRef } from './solve-plan.js';

type Rows = Float32Array | BigInt64Array;

/** Sequence lengths are padded up to a multiple of this (capped at the model's context): see padLength. */
export const PAD_MULTIPLE = 16;

/**
 * The length a window of `length` positions is solved at when its model declares
 * `state.pad`: the next multiple of PAD_MULTIPLE, capped at `cap` (the tokenizer's
 * context), and never below `length`. It depends on the window alone, so a window
 * sees the same graph shapes whether it solves alone or with company.
 */
export function padLength(length: number, cap = Infinity): number {
  return Math.max(length, Math.min(Math.ceil(length / PAD_MULTIPLE) * PAD_MULTIPLE, cap));
}

/**
 * Right padding of a CellBatch (models whose manifest declares `state.pad: "right"`):
 * every slot holds `length` positions along axis 0 of the state and of the padded
 * inputs; a sample shorter than that occupies the first positions.
 */
export interface CellPadding {
  /** The padded length (axis 0 of the state). */
  length: number;
  /** Per cell input after z: true when its axis 0 is the sequence axis, padded with the state's. */
  args: readonly boolean[];
}

/** One cell input after z: its element type, values per row and per-row dims. */
interface ArgSlot {
  type: 'float32' | 'int64';
  per: number;
  /** Padded inputs: values per position (axis 0); 0 when the input is not padded. */
  pos: number;
  tail: number[];
  /** capacity × per: row i holds the input of the sample in slot i. */
  data: Rows;
  /** Compacted rows for the current active set. */
  packed: Rows;
}

/**
 * The cell f(z, args…) over the slots of a solve: every slot holds one sample's
 * cell inputs (inject outputs, or raw inputs when the bundle has no inject graph).
 * `run` evaluates f on the active slots only, packed into contiguous rows, so
 * finished or empty slots cost nothing. Shared by one-request solves and the
 * continuous-batching scheduler, where slots change hands between iterations.
 *
 * With padding (CellPadding), slots hold samples of any length up to the padded
 * one: `setRow` writes zeros after a sample's own positions, and `run` sets the
 * cell's output there to 0. The solver's row is then zero past the sample's
 * length at every iteration (z starts at 0, f(z) − z is 0 there), and a causal
 * cell leaves the sample's own positions as they are unpadded: the solve is the
 * sample's own, with zeros appended to every vector it sums over.
 */
export class CellBatch {
  readonly capacity: number;
  readonly n: number;
  readonly #cell: OnnxGraph;
  readonly #zName: string;
  readonly #outName: string;
  readonly #argNames: string[];
  readonly #tail: number[];
  readonly #args: ArgSlot[];
  readonly #zc: Float32Array;
  readonly #oc: Float32Array;
  readonly #lastMask: Uint8Array;
  #lastCount = -1;
  /** The padded length, 0 without padding. */
  readonly #padLen: number;
  /** State values per position (padding only). */
  readonly #statePos: number;
  /** Per slot: the sample's own length (padding only). */
  readonly #valid: Int32Array;
  /** Time inside cell runs, ms. */
  elapsed = 0;
  /** Rows per run, for batching metrics: the last run's count. */
  lastRows = 0;
  /** With padding: positions the last run evaluated (rows × padded length), and how many of them were padding. */
  lastPositions = 0;
  lastPadPositions = 0;

  constructor(cell: OnnxGraph, names: { z: string; out: string; args: string[] }, capacity: number, stateTail: number[], argLayout: { type: 'float32' | 'int64'; tail: number[] }[], padding?: CellPadding) {
    this.capacity = capacity;
    this.n = stateTail.reduce((a, b) => a * b, 1);
    this.#cell = cell;
    this.#zName = names.z;
    this.#outName = names.out;
    this.#argNames = names.args;
    this.#tail = stateTail;
    const P = padding?.length ?? 0;
    if (padding && stateTail[0] !== P) throw new RangeError(`padded state must have length ${P} on axis 0 (got [${stateTail}])`);
    this.#padLen = P;
    this.#statePos = P ? this.n / P : 0;
    this.#valid = new Int32Array(capacity).fill(P);
    this.#args = argLayout.map(({ type, tail }, a) => {
      const per = tail.reduce((x, y) => x * y, 1);
      const padded = padding?.args[a] === true;
      if (padded && tail[0] !== P) throw new RangeError(`padded input ${names.args[a]} must have length ${P} on axis 0 (got [${tail}])`);
      const make = (k: number) => (type === 'int64' ? new BigInt64Array(k) : new Float32Array(k));
      return { type, per, pos: padded ? per / P : 0, tail, data: make(capacity * per), packed: make(capacity * per) };
    });
    this.#zc = new Float32Array(capacity * this.n);
    this.#oc = new Float32Array(capacity * this.n);
    this.#lastMask = new Uint8Array(capacity);
  }

  /**
   * Puts row `row` of a prepared request's cell inputs (its batch-first tensors) into `slot`.
   * With padding, `length` is the sample's own length (its tensors are laid out at
   * that length); the slot's positions after it are zeros.
   */
  setRow(slot: number, prepared: PreparedRef, row: number, length = this.#padLen): void {
    const P = this.#padLen;
    if (P && !(Number.isInteger(length) && length >= 1 && length <= P)) throw new RangeError(`length ${length} does not fit the padded length ${P}`);
    const args = openPrepared(prepared).cellArgs;
    for (let a = 0; a < this.#args.length; a++) {
      const s = this.#args[a];
      const src = args[a].data as Rows;
      const own = s.pos ? length * s.pos : s.per;
      const at = slot * s.per;
      copy(s.data, at, src, row * own, own);
      if (own < s.per) zero(s.data, at + own, at + s.per);
    }
    if (P) this.#valid[slot] = length;
    // The slot's inputs changed: the packed copy must be rebuilt even if the mask did not.
    this.#lastCount = -1;
  }

  /** f on the active slots: z and out are capacity × n; rows of inactive slots are neither read nor written. */
  async run(z: Float32Array, out: Float32Array, active: Uint8Array): Promise<void> {
    const cap = this.capacity, n = this.n;
    let count = 0;
    for (let i = 0; i < cap; i++) count += active[i];
    this.lastRows = count;
    this.lastPositions = 0;
    this.lastPadPositions = 0;
    if (count === 0) return;
    const start = performance.now();
    if (count === cap) {
      // Every slot runs: feed the buffers as they are, no packing.
      const dims = [cap, ...this.#tail];
      const feeds: Record<string, Tensor> = { [this.#zName]: createTensor('float32', z, dims) };
      for (let a = 0; a < this.#args.length; a++) {
        const s = this.#args[a];
        feeds[this.#argNames[a]] = createTensor(s.type, s.data, [cap, ...s.tail]);
      }
      await this.#cell.run(feeds, { [this.#outName]: createTensor('float32', out, dims) });
      if (this.#padLen) this.#mask(out, active);
      this.elapsed += performance.now() - start;
      return;
    }
    let same = count === this.#lastCount;
    for (let i = 0; same && i < cap; i++) same = this.#lastMask[i] === active[i];
    const zc = this.#zc, oc = this.#oc;
    for (let i = 0, r = 0; i < cap; i++) {
      if (!active[i]) continue;
      zc.set(z.subarray(i * n, (i + 1) * n), r * n);
      if (!same) for (const s of this.#args) copy(s.packed, r * s.per, s.data, i * s.per, s.per);
      r++;
    }
    this.#lastMask.set(active);
    this.#lastCount = count;
    const dims = [count, ...this.#tail];
    const feeds: Record<string, Tensor> = { [this.#zName]: createTensor('float32', zc.subarray(0, count * n), dims) };
    for (let a = 0; a < this.#args.length; a++) {
      const s = this.#args[a];
      feeds[this.#argNames[a]] = createTensor(s.type, s.packed.subarray(0, count * s.per), [count, ...s.tail]);
    }
    await this.#cell.run(feeds, { [this.#outName]: createTensor('float32', oc.subarray(0, count * n), dims) });
    for (let i = 0, r = 0; i < cap; i++) {
      if (!active[i]) continue;
      out.set(oc.subarray(r * n, (r + 1) * n), i * n);
      r++;
    }
    if (this.#padLen) this.#mask(out, active);
    this.elapsed += performance.now() - start;
  }

  // f(z) := 0 past each active sample's own length, so its pad positions stay at exactly 0
  // (the cell's output there is whatever the graph makes of zeros, e.g. a LayerNorm's bias).
  #mask(out: Float32Array, active: Uint8Array): void {
    const n = this.n, P = this.#padLen, pos = this.#statePos, valid = this.#valid;
    let rows = 0, pad = 0;
    for (let i = 0; i < this.capacity; i++) {
      if (!active[i]) continue;
      rows++;
      const L = valid[i];
      if (L === P) continue;
      pad += P - L;
      out.fill(0, i * n + L * pos, (i + 1) * n);
    }
    this.lastPositions = rows * P;
    this.lastPadPositions = pad;
  }
}

function zero(dst: Rows, from: number, to: number): void {
  if (dst instanceof Float32Array) dst.fill(0, from, to);
  else dst.fill(0n, from, to);
}

function copy(dst: Rows, dOff: number, src: Rows, sOff: number, len: number): void {
  if (dst instanceof Float32Array) dst.set((src as Float32Array).subarray(sOff, sOff + len), dOff);
  else dst.set((src as BigInt64Array).subarray(sOff, sOff + len), dOff);
}
