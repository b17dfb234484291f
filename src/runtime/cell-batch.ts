import { createTensor, type OnnxGraph, type Tensor } from './onnx.js';

type Rows = Float32Array | BigInt64Array;

/** One cell input after z: its element type, values per row and per-row dims. */
interface ArgSlot {
  type: 'float32' | 'int64';
  per: number;
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
  /** Time inside cell runs, ms. */
  elapsed = 0;
  /** Rows per run, for batching metrics: the last run's count. */
  lastRows = 0;

  constructor(cell: OnnxGraph, names: { z: string; out: string; args: string[] }, capacity: number, stateTail: number[], argLayout: { type: 'float32' | 'int64'; tail: number[] }[]) {
    this.capacity = capacity;
    this.n = stateTail.reduce((a, b) => a * b, 1);
    this.#cell = cell;
    this.#zName = names.z;
    this.#outName = names.out;
    this.#argNames = names.args;
    this.#tail = stateTail;
    this.#args = argLayout.map(({ type, tail }) => {
      const per = tail.reduce((a, b) => a * b, 1);
      const make = (k: number) => (type === 'int64' ? new BigInt64Array(k) : new Float32Array(k));
      return { type, per, tail, data: make(capacity * per), packed: make(capacity * per) };
    });
    this.#zc = new Float32Array(capacity * this.n);
    this.#oc = new Float32Array(capacity * this.n);
    this.#lastMask = new Uint8Array(capacity);
  }

  /** Puts row `row` of a request's cell inputs (batch-first tensors) into `slot`. */
  setRow(slot: number, args: readonly Tensor[], row: number): void {
    for (let a = 0; a < this.#args.length; a++) {
      const s = this.#args[a];
      const src = args[a].data as Rows;
      copy(s.data, slot * s.per, src, row * s.per, s.per);
    }
    // The slot's inputs changed: the packed copy must be rebuilt even if the mask did not.
    this.#lastCount = -1;
  }

  /** f on the active slots: z and out are capacity × n; rows of inactive slots are neither read nor written. */
  async run(z: Float32Array, out: Float32Array, active: Uint8Array): Promise<void> {
    const cap = this.capacity, n = this.n;
    let count = 0;
    for (let i = 0; i < cap; i++) count += active[i];
    this.lastRows = count;
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
    this.elapsed += performance.now() - start;
  }
}

function copy(dst: Rows, dOff: number, src: Rows, sOff: number, len: number): void {
  if (dst instanceof Float32Array) dst.set((src as Float32Array).subarray(sOff, sOff + len), dOff);
  else dst.set((src as BigInt64Array).subarray(sOff, sOff + len), dOff);
}
