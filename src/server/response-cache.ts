import { createHash } from 'node:crypto';
import type { PoolResult } from './pool.js';
import type { InferJob } from './protocol.js';

/** Bookkeeping per entry beyond its arrays (key, map node, object headers): a fixed estimate. */
const ENTRY_OVERHEAD = 512;

interface Entry {
  model: string;
  result: PoolResult;
  bytes: number;
}

/**
 * The fixed-point response cache (Triton's response cache, for DEQ solves): a solve's
 * answer keyed by the model, its version, the exact bytes of every input and the solver
 * settings, bounded in bytes with least-recently-used eviction. Off by default; on for
 * every model or for the ones named. A hit is the stored answer itself and costs no solve.
 */
export class FixedPointCache {
  readonly maxBytes: number;
  /** Models it serves; null: all. */
  readonly #models: ReadonlySet<string> | null;
  /** Insertion order is recency: a hit moves its entry to the end, eviction takes from the front. */
  readonly #entries = new Map<string, Entry>();
  #bytes = 0;
  /** Entries and bytes per model, for metrics. */
  readonly #perModel = new Map<string, { entries: number; bytes: number }>();

  constructor(maxBytes: number, models: readonly string[] = []) {
    if (!(Number.isInteger(maxBytes) && maxBytes >= 0)) throw new RangeError(`cache size must be an integer ≥ 0 (got ${maxBytes})`);
    this.maxBytes = maxBytes;
    this.#models = models.length ? new Set(models) : null;
  }

  /** Whether requests to `model` go through the cache. */
  enabled(model: string): boolean {
    return this.maxBytes > 0 && (this.#models === null || this.#models.has(model));
  }

  get bytes(): number {
    return this.#bytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Entries and bytes held for one model. */
  usage(model: string): { entries: number; bytes: number } {
    return this.#perModel.get(model) ?? { entries: 0, bytes: 0 };
  }

  /**
   * The key of a job: a SHA-256 over the model, its version, every setting that decides
   * the answer, and each input's name, type, length and bytes. Call before the job's
   * arrays are transferred to a worker.
   */
  static key(model: string, version: string, job: InferJob): string {
    const h = createHash('sha256');
    const s = job.solver;
    h.update(JSON.stringify({
      model, version, batch: job.batch, length: job.length ?? null, outputs: job.outputs ?? null,
      solver: [s.method, s.tol, s.stopMode, s.maxIter, s.patience ?? 0, s.predictionTol ?? null, s.predictionMargin ?? null],
    }));
    const feed = (role: string, name: string, a: Float32Array | BigInt64Array) => {
      h.update(`\0${role}:${name}:${a instanceof Float32Array ? 'f32' : 'i64'}:${a.length}\0`);
      h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    };
    if (job.input) feed('input', '', job.input);
    for (const [name, a] of Object.entries(job.inputs ?? {}).sort(([x], [y]) => (x < y ? -1 : 1))) feed('inputs', name, a);
    for (const [name, a] of Object.entries(job.headInputs ?? {}).sort(([x], [y]) => (x < y ? -1 : 1))) feed('head', name, a);
    return `${model}\0${h.digest('hex')}`;
  }

  /** The stored answer, now the most recently used; undefined on a miss. */
  get(key: string): PoolResult | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, e);
    return e.result;
  }

  /**
   * Stores an answer, evicting the least recently used entries until it fits. Returns the
   * models of the entries it evicted; an answer larger than the whole cache is not stored.
   */
  put(key: string, model: string, result: PoolResult): string[] {
    const bytes = entryBytes(key, result);
    const evicted: string[] = [];
    if (bytes > this.maxBytes) return evicted;
    const old = this.#entries.get(key);
    if (old) this.#drop(key, old);
    while (this.#bytes + bytes > this.maxBytes) {
      const [k, e] = this.#entries.entries().next().value as [string, Entry];
      this.#drop(k, e);
      evicted.push(e.model);
    }
    this.#entries.set(key, { model, result, bytes });
    this.#bytes += bytes;
    const u = this.#perModel.get(model) ?? { entries: 0, bytes: 0 };
    u.entries++;
    u.bytes += bytes;
    this.#perModel.set(model, u);
    return evicted;
  }

  /** Drops every answer of `model` (a reload: a new bundle may keep its version string). */
  forget(model: string): void {
    for (const [k, e] of this.#entries) if (e.model === model) this.#drop(k, e);
  }

  #drop(key: string, e: Entry): void {
    this.#entries.delete(key);
    this.#bytes -= e.bytes;
    const u = this.#perModel.get(e.model)!;
    u.entries--;
    u.bytes -= e.bytes;
  }
}

function entryBytes(key: string, r: PoolResult): number {
  let n = ENTRY_OVERHEAD + 2 * key.length;
  for (const t of Object.values(r.outputs)) n += t.data.byteLength + 8 * t.dims.length;
  const s = r.solver;
  n += s.iterations.byteLength + s.residual.byteLength + s.converged.byteLength + s.diverged.byteLength + s.end.byteLength;
  return n;
}
