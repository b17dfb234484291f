// The pool's waiting room: one FIFO queue per model, served round-robin across models, bounded
// by --queue-size, and a deadline timer for each waiting request (it leaves its queue when its
// deadline passes before a worker takes it). No threads: unit-tested in test/server/model-queues.test.ts.
import { DeqError } from '../errors.js';

/** What a queue needs to know of a waiting request. */
export interface Queued {
  id: number;
  model: string;
  /** Absolute deadline, Date.now() milliseconds. */
  deadline: number;
}

export interface ModelQueuesOptions<T extends Queued> {
  models: readonly string[];
  /** Requests allowed to wait per model (--queue-size). */
  queueSize: number;
  /** Sent with DEQ_ERR_QUEUE_FULL (--retry-after-s). */
  retryAfterS: number;
  /** `item`'s deadline passed while it waited: it has left its queue. */
  onExpire: (item: T) => void;
}

interface Entry<T> {
  item: T;
  timer: NodeJS.Timeout;
}

export class ModelQueues<T extends Queued> {
  readonly #opts: ModelQueuesOptions<T>;
  readonly #names: readonly string[];
  readonly #queues = new Map<string, Entry<T>[]>();
  /** Where the next round-robin turn starts: the model after the last one served. */
  #rr = 0;

  constructor(opts: ModelQueuesOptions<T>) {
    this.#opts = opts;
    this.#names = [...opts.models];
    for (const m of this.#names) this.#queues.set(m, []);
  }

  /** Models served (one queue each). */
  get models(): number {
    return this.#names.length;
  }

  has(model: string): boolean {
    return this.#queues.has(model);
  }

  /** Requests waiting for `model`, or for every model. */
  length(model?: string): number {
    if (model !== undefined) return this.#queues.get(model)?.length ?? 0;
    let n = 0;
    for (const q of this.#queues.values()) n += q.length;
    return n;
  }

  /**
   * DEQ_ERR_QUEUE_FULL when `model`'s queue, with `elsewhere` more of its requests waiting
   * outside it (held by a busy worker), has no room for one more; else undefined.
   */
  refusal(model: string, elsewhere = 0): DeqError | undefined {
    const { queueSize, retryAfterS } = this.#opts;
    if (this.length(model) + elsewhere < queueSize) return undefined;
    return new DeqError('DEQ_ERR_QUEUE_FULL', `the queue for ${model} is full (${queueSize} waiting); retry later`, { retryAfterS });
  }

  /** `item` waits at the back of its model's queue (room is checked first, with refusal()). */
  push(item: T): void {
    this.#queue(item.model).push(this.#arm(item));
  }

  /** `items` go back to the front of their queues, in their order (a dead worker's held jobs). */
  requeue(items: readonly T[]): void {
    for (let i = items.length - 1; i >= 0; i--) this.#queue(items[i].model).unshift(this.#arm(items[i]));
  }

  /** Takes request `id` out of its queue (its client went away); undefined if it is not waiting. */
  remove(id: number): T | undefined {
    for (const q of this.#queues.values()) {
      const i = q.findIndex((e) => e.item.id === id);
      if (i !== -1) return this.#take(q, i);
    }
    return undefined;
  }

  /**
   * The one way out of the queues in order: models in round-robin turn, each queue's head only
   * (FIFO per model). The first head `choose` finds a place for leaves its queue, with that
   * place; a head that must wait does not stop the other models. Undefined if none can go.
   */
  take<R>(choose: (head: T) => R | undefined): [T, R] | undefined {
    const n = this.#names.length;
    for (let k = 0; k < n; k++) {
      const at = (this.#rr + k) % n;
      const q = this.#queues.get(this.#names[at])!;
      if (q.length === 0) continue;
      const to = choose(q[0].item);
      if (to === undefined) continue;
      this.#rr = (at + 1) % n;
      return [this.#take(q, 0), to];
    }
    return undefined;
  }

  /** Empties every queue (shutdown): the requests that were waiting, oldest first per model. */
  drain(): T[] {
    const out: T[] = [];
    for (const q of this.#queues.values()) while (q.length > 0) out.push(this.#take(q, 0));
    return out;
  }

  #queue(model: string): Entry<T>[] {
    const q = this.#queues.get(model);
    if (!q) throw new DeqError('DEQ_ERR_MODEL_NOT_FOUND', `no model named ${model}`);
    return q;
  }

  #arm(item: T): Entry<T> {
    const entry: Entry<T> = {
      item,
      timer: setTimeout(() => {
        const q = this.#queues.get(item.model)!;
        const i = q.indexOf(entry);
        if (i === -1) return;
        this.#take(q, i);
        this.#opts.onExpire(item);
      }, Math.max(0, item.deadline - Date.now())),
    };
    entry.timer.unref();
    return entry;
  }

  #take(q: Entry<T>[], i: number): T {
    const [entry] = q.splice(i, 1);
    clearTimeout(entry.timer);
    return entry.item;
  }
}
