/** One live sequence: the last fixed point it reached, and when it was last used. */
interface Sequence {
  state: Float32Array;
  /** batch × state dims the state was solved at: a request of another shape starts cold. */
  dims: string;
  usedAt: number;
}

/** What happened to a request's sequence state. */
export interface SequenceStart {
  /** The initial state to solve from; undefined: cold (a new sequence, a start flag, another shape). */
  z0?: Float32Array;
}

/**
 * Stateful sequences (Triton's sequence batcher with implicit state, for a DEQ): a request
 * with a `sequence_id` starts its solve from the last z* of that sequence. Bounded three
 * ways: live sequences (the least recently used one makes room), bytes of state, and an
 * idle timeout. Only where the solve starts depends on this state; the answer still meets
 * the request's stop rule, so a stale or dropped state costs iterations, never correctness.
 */
export class SequenceStore {
  readonly maxSequences: number;
  readonly maxBytes: number;
  readonly idleMs: number;
  /** Insertion order is recency. Keyed by model and sequence id. */
  readonly #live = new Map<string, Sequence>();
  #bytes = 0;
  readonly #now: () => number;

  constructor(opts: { maxSequences: number; maxBytes: number; idleMs: number }, now: () => number = Date.now) {
    this.maxSequences = opts.maxSequences;
    this.maxBytes = opts.maxBytes;
    this.idleMs = opts.idleMs;
    this.#now = now;
  }

  get size(): number {
    return this.#live.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /**
   * The state a request of sequence `id` starts from. `start`: the client says this is a new
   * sequence (any old state is dropped). `dims`: the request's state shape, batch first.
   */
  begin(model: string, id: string, dims: readonly number[], start: boolean): SequenceStart {
    this.expire();
    const key = `${model}\0${id}`;
    const s = this.#live.get(key);
    if (!s) return {};
    if (start || s.dims !== dims.join('x')) {
      this.#drop(key, s);
      return {};
    }
    s.usedAt = this.#now();
    this.#live.delete(key);
    this.#live.set(key, s);
    return { z0: s.state };
  }

  /** Keeps z* as the sequence's state, or (end) forgets the sequence. */
  finish(model: string, id: string, dims: readonly number[], state: Float32Array | undefined, end: boolean): void {
    this.expire();
    const key = `${model}\0${id}`;
    const old = this.#live.get(key);
    if (old) this.#drop(key, old);
    if (end || !state || state.byteLength > this.maxBytes || this.maxSequences === 0) return;
    while (this.#live.size >= this.maxSequences || this.#bytes + state.byteLength > this.maxBytes) {
      const [k, s] = this.#live.entries().next().value as [string, Sequence];
      this.#drop(k, s);
    }
    this.#live.set(key, { state, dims: dims.join('x'), usedAt: this.#now() });
    this.#bytes += state.byteLength;
  }

  /** Forgets sequences idle for longer than idleMs. */
  expire(): void {
    const cutoff = this.#now() - this.idleMs;
    for (const [k, s] of this.#live) {
      if (s.usedAt > cutoff) break; // recency order: the rest are newer
      this.#drop(k, s);
    }
  }

  #drop(key: string, s: Sequence): void {
    this.#live.delete(key);
    this.#bytes -= s.state.byteLength;
  }
}
