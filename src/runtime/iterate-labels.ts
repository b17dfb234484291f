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
  readonly #head: OnnxGraph;
  readonly #zName: string;
  readonly #logits: string;
  readonly #tail: readonly number[];
  readonly #packed: Float32Array;
  readonly #rows: Int32Array;
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
