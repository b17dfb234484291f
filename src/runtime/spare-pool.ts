// Idle objects kept for reuse by shape key (solver workspaces, cell batches, labelers of
// DeqModel.infer): buffers too large to allocate per request, a few spares per shape at most.

/** How many idle objects a key keeps: enough for steady traffic, bounded for odd batch sizes. */
export const SPARES_PER_KEY = 2;

/** A bounded free list per key. */
export class SparePool<T> {
  readonly #free = new Map<string, T[]>();

  /** An idle object for `key`, or undefined when none is kept. */
  take(key: string): T | undefined {
    return this.#free.get(key)?.pop();
  }

  /** Keeps `item` for `key` unless the key already keeps SPARES_PER_KEY. */
  give(key: string, item: T): void {
    const list = this.#free.get(key) ?? [];
    if (list.length < SPARES_PER_KEY) list.push(item);
    this.#free.set(key, list);
  }
}
