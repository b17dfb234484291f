// SerialExecutor (runtime/executor.ts): batching off's implementation of the executor contract.
// A stand-in model iterates until its solver's shouldStop says so, so the tests see exactly when
// deadlines, cancellation and shutdown reach a running or waiting request.
import { describe, expect, it } from 'vitest';
import { SerialExecutor, SerialLane } from '../../src/runtime/executor.js';
import type { DeqModel, InferRequest } from '../../src/runtime/index.js';

/** A model whose solve runs `iterations` steps (a macrotask each), or until shouldStop. */
function fakeModel(iterations = 1e9, log: string[] = []) {
  return {
    async infer(req: InferRequest & { solver?: { shouldStop?: () => boolean } }) {
      const tag = String((req.inputs?.tag as Float32Array | undefined)?.[0] ?? '?');
      log.push(`start ${tag}`);
      let k = 0;
      for (; k < iterations; k++) {
        if (req.solver?.shouldStop?.()) break;
        await new Promise((r) => setImmediate(r));
      }
      log.push(`end ${tag}`);
      return { outputs: {}, solver: { stopped: k < iterations, iterations: Int32Array.of(k) }, options: {}, timing: {} } as never;
    },
  } as unknown as DeqModel;
}
const req = (tag: number, deadline = Date.now() + 10_000) => ({ inputs: { tag: Float32Array.of(tag) }, batch: 1, deadline });

describe('SerialExecutor', () => {
  it('runs requests one at a time in order, across the models sharing a lane', async () => {
    const log: string[] = [];
    const lane = new SerialLane();
    const a = new SerialExecutor(fakeModel(5, log), lane), b = new SerialExecutor(fakeModel(5, log), lane);
    const results = await Promise.all([a.submit(req(1)).result, b.submit(req(2)).result, a.submit(req(3)).result]);
    expect(log).toEqual(['start 1', 'end 1', 'start 2', 'end 2', 'start 3', 'end 3']);
    expect(results.every((r) => r.queueMs >= 0)).toBe(true);
  });

  it('a waiting request fails at its deadline at once, not when its turn comes', async () => {
    const ex = new SerialExecutor(fakeModel());
    const long = ex.submit(req(1, Date.now() + 400));
    const t0 = Date.now();
    const waiting = ex.submit(req(2, Date.now() + 50));
    await expect(waiting.result).rejects.toMatchObject({ code: 'DEQ_ERR_DEADLINE_EXCEEDED' });
    expect(Date.now() - t0).toBeLessThan(300);
    // The running one stops at its own deadline, answered `stopped`.
    expect((await long.result).solver.stopped).toBe(true);
  });

  it('cancel: a waiting request fails at once; a running one stops at its next iteration', async () => {
    const log: string[] = [];
    const ex = new SerialExecutor(fakeModel(1e9, log));
    const running = ex.submit(req(1));
    const waiting = ex.submit(req(2));
    ex.cancel(waiting.id);
    await expect(waiting.result).rejects.toMatchObject({ code: 'DEQ_ERR_CANCELLED' });
    await new Promise((r) => setTimeout(r, 20));
    ex.cancel(running.id);
    await expect(running.result).rejects.toMatchObject({ code: 'DEQ_ERR_CANCELLED' });
    expect(log).toEqual(['start 1', 'end 1']);
  });

  it('abortAll stops the running request at its next iteration and the waiting ones at once, answered stopped', async () => {
    const lane = new SerialLane();
    const ex = new SerialExecutor(fakeModel(), lane);
    const first = ex.submit(req(1)), second = ex.submit(req(2));
    await new Promise((r) => setTimeout(r, 20));
    ex.abortAll();
    const [a, b] = await Promise.all([first.result, second.result]);
    expect([a.solver.stopped, b.solver.stopped]).toEqual([true, true]);
  });
});
