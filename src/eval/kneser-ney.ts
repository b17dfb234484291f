/**
 * Interpolated Kneser-Ney trigram model over integer token ids (Chen & Goodman 1998,
 * one absolute discount per order, D = n1 / (n1 + 2·n2) from that order's
 * count-of-counts). The highest order uses raw counts, the lower orders
 * continuation counts, and the unigram level interpolates with the uniform
 * distribution over the whole vocabulary, so p(· | u, v) sums to 1 over every id.
 *
 * Histories before the first token of a stream are the `bos` id (two of them).
 */
export class KneserNeyTrigram {
  readonly vocabSize: number;
  readonly bos: number;
  /** Discounts of the unigram, bigram and trigram levels. */
  readonly discounts: readonly [number, number, number];
  // Keys pack (u, v, w) as (u·V + v)·V + w: exact in a double for V < 2^17.
  readonly #c3 = new Map<number, number>();       // c(u v w)
  readonly #ctx3 = new Map<number, number>();     // c(u v ·)
  readonly #types3 = new Map<number, number>();   // N1+(u v ·)
  readonly #cont2 = new Map<number, number>();    // N1+(· v w)
  readonly #ctx2: Float64Array;                   // Σ_w N1+(· v w), per v
  readonly #types2: Float64Array;                 // N1+(v ·) over continuation bigrams, per v
  readonly #cont1: Float64Array;                  // N1+(· w), per w
  readonly #total1: number;                       // Σ_w N1+(· w)
  readonly #types1: number;                       // |{w : N1+(· w) > 0}|

  /** Counts a training stream of ids in [0, vocabSize). */
  constructor(train: ArrayLike<number>, vocabSize: number, bos: number) {
    if (vocabSize >= 1 << 17) throw new RangeError(`vocabulary of ${vocabSize} is too large for packed trigram keys`);
    this.vocabSize = vocabSize;
    this.bos = bos;
    const V = vocabSize;
    let u = bos, v = bos;
    for (let i = 0; i < train.length; i++) {
      const w = train[i];
      if (!(w >= 0 && w < V)) throw new RangeError(`token id ${w} at ${i} is outside the vocabulary`);
      const k3 = (u * V + v) * V + w;
      const c = this.#c3.get(k3) ?? 0;
      this.#c3.set(k3, c + 1);
      const k2 = u * V + v;
      this.#ctx3.set(k2, (this.#ctx3.get(k2) ?? 0) + 1);
      if (c === 0) {
        this.#types3.set(k2, (this.#types3.get(k2) ?? 0) + 1);
        const vw = v * V + w;
        this.#cont2.set(vw, (this.#cont2.get(vw) ?? 0) + 1);
      }
      u = v; v = w;
    }
    const ctx2 = new Float64Array(V), types2 = new Float64Array(V), cont1 = new Float64Array(V);
    for (const [vw, n] of this.#cont2) {
      const vv = Math.floor(vw / V), w = vw - vv * V;
      ctx2[vv] += n;
      types2[vv] += 1;
      cont1[w] += 1;
    }
    this.#ctx2 = ctx2;
    this.#types2 = types2;
    this.#cont1 = cont1;
    let total1 = 0, types1 = 0;
    for (let w = 0; w < V; w++) { total1 += cont1[w]; if (cont1[w] > 0) types1++; }
    this.#total1 = total1;
    this.#types1 = types1;
    this.discounts = [
      discount(cont1.values()),
      discount(this.#cont2.values()),
      discount(this.#c3.values()),
    ];
  }

  /** p(w | u, v): u, v the two previous ids (oldest first). */
  prob(u: number, v: number, w: number): number {
    const V = this.vocabSize;
    const [d1, d2, d3] = this.discounts;
    let p = (Math.max(this.#cont1[w] - d1, 0) + d1 * this.#types1 / V) / this.#total1;
    const c2 = this.#ctx2[v];
    if (c2 > 0) p = (Math.max((this.#cont2.get(v * V + w) ?? 0) - d2, 0) + d2 * this.#types2[v] * p) / c2;
    const k2 = u * V + v;
    const c3 = this.#ctx3.get(k2) ?? 0;
    if (c3 > 0) p = (Math.max((this.#c3.get(k2 * V + w) ?? 0) - d3, 0) + d3 * (this.#types3.get(k2) ?? 0) * p) / c3;
    return p;
  }

  /** Natural-log probability of every token of a stream, histories starting from `bos`. */
  logProbs(stream: ArrayLike<number>): Float64Array {
    const out = new Float64Array(stream.length);
    let u = this.bos, v = this.bos;
    for (let i = 0; i < stream.length; i++) {
      const w = stream[i];
      out[i] = Math.log(this.prob(u, v, w));
      u = v; v = w;
    }
    return out;
  }
}

// D = n1 / (n1 + 2 n2); 0.5 when the counts give no estimate.
function discount(counts: Iterable<number>): number {
  let n1 = 0, n2 = 0;
  for (const c of counts) { if (c === 1) n1++; else if (c === 2) n2++; }
  return n1 + 2 * n2 > 0 && n1 > 0 ? n1 / (n1 + 2 * n2) : 0.5;
}
