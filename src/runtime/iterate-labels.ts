import { createTensor, type OnnxGraph } from './onnx.js';
import { argmax } from './parity.js';

/**
 * A classifier's top-1 on the current iterates of some rows of a solve: what early exit
 * on a stable prediction compares from one iteration to the next, and what the label
 * trace records. The wanted rows are packed and go through the head in one run; the
 * head reads z alone, so a row's label does not depend on its company.
 */
export class IterateLabeler {
  readonly capacity: number;
  readonly n: number;
  /** Classes kept per row for `topK` (watching a solve live). */
  static readonly TOP_K = 5;
  readonly #head: OnnxGraph;
  readonly #zName: string;
  readonly #logits: string;
  readonly #tail: readonly number[];
  readonly #packed: Float32Array;
  readonly #rows: Int32Array;
  /** Per slot: the top classes of its last labelled iterate, and their softmax probabilities. */
  readonly #topIdx: Int32Array;
  readonly #topP: Float32Array;
  #k = 0;
  /** Head runs made, and the ms spent in them (metrics, benches). */
  runs = 0;
  elapsed = 0;

  constructor(head: OnnxGraph, names: { z: string; logits: string }, capacity: number, stateTail: readonly number[]) {
    this.#head = head;
    this.#zName = names.z;
    this.#logits = names.logits;
    this.capacity = capacity;
    this.#tail = stateTail.slice();
    this.n = stateTail.reduce((a, b) => a * b, 1);
    this.#packed = new Float32Array(capacity * this.n);
    this.#rows = new Int32Array(capacity);
    this.#topIdx = new Int32Array(capacity * IterateLabeler.TOP_K);
    this.#topP = new Float32Array(capacity * IterateLabeler.TOP_K);
  }

  /** The top classes (most probable first) and probabilities of slot `row`'s last labelled iterate (views). */
  topK(row: number): { classes: Int32Array; probabilities: Float32Array } {
    const o = row * IterateLabeler.TOP_K;
    return { classes: this.#topIdx.subarray(o, o + this.#k), probabilities: this.#topP.subarray(o, o + this.#k) };
  }

  /**
   * For every row i whose want[i] is 1: the top-1 class of row i of z into labels[i], and its
   * softmax probability minus the runner-up's into margins[i].
   */
  async run(z: Float32Array, want: Uint8Array, labels: Int32Array, margins: Float64Array): Promise<void> {
    const { n } = this;
    let k = 0;
    for (let i = 0; i < this.capacity; i++) {
      if (!want[i]) continue;
      this.#packed.set(z.subarray(i * n, (i + 1) * n), k * n);
      this.#rows[k++] = i;
    }
    if (k === 0) return;
    const t0 = performance.now();
    const res = await this.#head.run({ [this.#zName]: createTensor('float32', this.#packed.subarray(0, k * n), [k, ...this.#tail]) }, { [this.#logits]: null });
    this.elapsed += performance.now() - t0;
    this.runs++;
    const logits = res[this.#logits].data as Float32Array;
    const classes = logits.length / k;
    for (let j = 0; j < k; j++) {
      const row = this.#rows[j];
      labels[row] = argmax(logits.subarray(j * classes, (j + 1) * classes));
      margins[row] = softmaxMargin(logits, j * classes, classes);
      this.#keepTop(row, logits, j * classes, classes);
    }
  }

  // Top classes by selection (k ≤ 5 of a few classes): no sort, no allocation.
  #keepTop(row: number, logits: Float32Array, o: number, classes: number): void {
    const K = Math.min(IterateLabeler.TOP_K, classes), base = row * IterateLabeler.TOP_K;
    this.#k = K;
    let max = -Infinity, sum = 0;
    for (let c = 0; c < classes; c++) if (logits[o + c] > max) max = logits[o + c];
    for (let c = 0; c < classes; c++) sum += Math.exp(logits[o + c] - max);
    for (let t = 0; t < K; t++) {
      let best = -1;
      for (let c = 0; c < classes; c++) {
        let taken = false;
        for (let u = 0; u < t; u++) if (this.#topIdx[base + u] === c) taken = true;
        if (!taken && (best < 0 || logits[o + c] > logits[o + best])) best = c;
      }
      this.#topIdx[base + t] = best;
      this.#topP[base + t] = Math.exp(logits[o + best] - max) / sum;
    }
  }
}

/** p(top-1) − p(runner-up) of the softmax over logits[o … o + k), in float64. */
export function softmaxMargin(logits: Float32Array, o: number, k: number): number {
  let a = -Infinity, b = -Infinity;
  for (let c = o; c < o + k; c++) {
    const v = logits[c];
    if (v > a) { b = a; a = v; } else if (v > b) b = v;
  }
  let sum = 0;
  for (let c = o; c < o + k; c++) sum += Math.exp(logits[c] - a);
  return k < 2 ? 1 : (1 - Math.exp(b - a)) / sum;
}
