// Turns between a worker's schedulers: shortest expected solve first, nobody starves, and a
// scheduler that just released competes for the next turn instead of losing it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeqModel, Scheduler, TurnGate } from '../../src/runtime/index.js';
import { TINY_IMAGE } from '../helpers/fixtures.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('TurnGate', () => {
  it('grants at once when nobody holds it', async () => {
    const gate = new TurnGate();
    await gate.acquire(5);
    expect(gate.waiting).toBe(0);
    gate.release();
    await gate.acquire(1); // free again
    gate.release();
  });

  it('hands the gate to the lowest priority waiting, then the next', async () => {
    const gate = new TurnGate();
    await gate.acquire(0);
    const order: number[] = [];
    const wait = (p: number) => gate.acquire(p).then(() => { order.push(p); });
    const all = [wait(5), wait(1), wait(3)];
    expect(gate.waiting).toBe(3);
    for (let i = 0; i < 3; i++) {
      gate.release();
      await tick();
      await tick();
    }
    await Promise.all(all);
    expect(order).toEqual([1, 3, 5]);
    gate.release();
  });

  it('lets the releaser compete for the next turn, and passes a waiter over at most maxPassed times', async () => {
    const gate = new TurnGate(2);
    const turns: string[] = [];
    let stop = false;
    // A short-solve scheduler that always wants the next turn, and a long one that waits.
    const short = (async () => {
      while (!stop) {
        await gate.acquire(1);
        turns.push('short');
        await tick();
        gate.release();
      }
    })();
    await tick();
    const long = gate.acquire(20).then(() => { turns.push('long'); stop = true; gate.release(); });
    await Promise.all([short, long]);
    // The first short turn was already running when long asked; two more pass it over, then it goes.
    expect(turns.slice(0, 4)).toEqual(['short', 'short', 'short', 'long']);
  });

  it('rejects a bad maxPassed', () => {
    expect(() => new TurnGate(-1)).toThrow(RangeError);
    expect(() => new TurnGate(1.5)).toThrow(RangeError);
  });
});

describe('schedulers sharing a gate', () => {
  let model: DeqModel;
  beforeAll(async () => { model = await DeqModel.load(TINY_IMAGE); });
  afterAll(async () => { await model?.release(); });

  const input = () => Float32Array.from({ length: 64 }, (_, i) => Math.sin(i));
  // Fixed point to a tight tolerance: many iterations. Broyden to a loose one: a few.
  const slow = { method: 'fixed-point' as const, tol: 1e-7, stopMode: 'abs' as const, maxIter: 200 };
  const fast = { method: 'broyden' as const, tol: 1e-2, maxIter: 30 };

  async function slowRunsDuringFast(gate?: TurnGate): Promise<{ slowRuns: number; fastIterations: number }> {
    let slowRuns = 0, counting = false;
    const a = new Scheduler(model, { gate }, { onRun: () => { if (counting) slowRuns++; } });
    const b = new Scheduler(model, { gate });
    // Teach each its iterations per row (its priority at the gate).
    await a.submit({ input: input(), batch: 1, solver: slow }).result;
    await b.submit({ input: input(), batch: 1, solver: fast }).result;
    const long = a.submit({ input: input(), batch: 1, solver: slow }).result;
    await tick();
    counting = true;
    const short = await b.submit({ input: input(), batch: 1, solver: fast }).result;
    counting = false;
    const longResult = await long;
    expect(longResult.solver.iterations[0]).toBeGreaterThan(3 * short.solver.iterations[0]);
    return { slowRuns, fastIterations: short.solver.iterations[0] };
  }

  it('the model with the shorter solves goes first: the long solve pauses while the short one runs', async () => {
    const without = await slowRunsDuringFast();
    const withGate = await slowRunsDuringFast(new TurnGate(8));
    // Without a gate the two take turns, one iteration each (measured: 7 long runs during 5
    // short iterations). With it the long one gets the run it had started and one more while
    // the short request's injection runs (it asks for a turn only after), then none.
    expect(without.slowRuns).toBeGreaterThanOrEqual(without.fastIterations);
    expect(withGate.slowRuns).toBeLessThanOrEqual(2);
    expect(withGate.fastIterations).toBeGreaterThan(2);
  });
});
