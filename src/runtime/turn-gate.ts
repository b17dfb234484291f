/**
 * Turns between the schedulers of one worker thread. Every cell run holds the gate; when
 * several schedulers (models) want the next one, the one whose solves finish in the fewest
 * iterations goes first (shortest remaining work first), so a model that needs 5 iterations is
 * not held behind one that needs 20. A waiter passed over `maxPassed` times goes next
 * whatever its priority, so no model starves.
 */
export class TurnGate {
  readonly maxPassed: number;
  readonly #waiting: { priority: number; passed: number; grant: () => void }[] = [];
  #busy = false;

  constructor(maxPassed = 8) {
    if (!(Number.isInteger(maxPassed) && maxPassed >= 0)) throw new RangeError(`maxPassed must be an integer ≥ 0 (got ${maxPassed})`);
    this.maxPassed = maxPassed;
  }

  /** Waits for the gate; lower `priority` goes first. Uncontended, it is granted at once. */
  acquire(priority: number): Promise<void> {
    if (!this.#busy) {
      this.#busy = true;
      return Promise.resolve();
    }
    return new Promise((grant) => this.#waiting.push({ priority, passed: 0, grant }));
  }

  /** Hands the gate on. */
  release(): void {
    if (this.#waiting.length === 0) {
      this.#busy = false;
      return;
    }
    // Decide on the next macrotask: the scheduler that just released usually asks again in the
    // promise continuations that follow, and must compete for this turn rather than lose it.
    // (Only the holder releases, once per turn, so one decision is pending at a time.)
    setImmediate(() => this.#grantNext());
  }

  /** Schedulers waiting now (tests, metrics). */
  get waiting(): number {
    return this.#waiting.length;
  }

  #grantNext(): void {
    const w = this.#waiting;
    if (w.length === 0) {
      this.#busy = false;
      return;
    }
    let pick = w.findIndex((x) => x.passed >= this.maxPassed);
    if (pick < 0) {
      pick = 0;
      for (let i = 1; i < w.length; i++) if (w[i].priority < w[pick].priority) pick = i;
    }
    const [next] = w.splice(pick, 1);
    for (const x of w) x.passed++;
    next.grant();
  }
}
