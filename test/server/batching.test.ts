// #11 over HTTP: continuous batching shares cell runs between concurrent requests
// without changing any answer, frees the rows of clients that go away, fails only
// the requests of a crashed worker's batch, and still sheds overload with 503.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lmInferBody, NEVER_CONVERGES, poolEvent, postJson, startTestServer, until, type TestServer } from './helpers.js';
import { metricTotal } from '../../src/eval/bench-http.js';

const json = (r: Response): Promise<any> => r.json();

/** v2 requests for tiny-image with their own inputs, tolerances, caps and methods. */
function imageRequests(count: number) {
  return Array.from({ length: count }, (_, k) => ({
    parameters: { tol: [1e-2, 1e-3, 1e-4, 1e-5][k % 4], max_iter: 5 + ((k * 7) % 30), solver: k % 3 === 0 ? 'anderson' : 'broyden' },
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1 + (k % 2), 1, 8, 8], data: Array.from({ length: 64 * (1 + (k % 2)) }, (_, i) => Math.sin(i * 0.37 + k) * 1.5) }],
  }));
}

describe('continuous batching over HTTP', () => {
  let on: TestServer, off: TestServer;
  beforeAll(async () => {
    on = await startTestServer({ workers: 1, batching: 'on', batchRows: 8, maxQueueDelayMs: 5, maxIterCap: 100_000 });
    off = await startTestServer({ workers: 1, batching: 'off' });
  });
  afterAll(async () => {
    await on?.cleanup();
    await off?.cleanup();
  });

  it('answers concurrent requests as each would be answered alone, sharing cell runs', async () => {
    const reqs = imageRequests(12);
    const batched = await Promise.all(reqs.map((b) => postJson(`${on.url}/v2/models/tiny-image/infer`, b).then(json)));
    const alone = [];
    for (const b of reqs) alone.push(await json(await postJson(`${off.url}/v2/models/tiny-image/infer`, b)));
    for (const [k, got] of batched.entries()) {
      expect(got.parameters.iterations, `request ${k}`).toEqual(alone[k].parameters.iterations);
      const a = got.outputs[0].data as number[], e = alone[k].outputs[0].data as number[];
      for (let i = 0; i < e.length; i++) expect(Math.abs(a[i] - e[i])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(e[i])));
    }
    // The server's own account (workers report every 200 ms): more than one sample per cell run on average.
    await until(async () => metricTotal(await (await fetch(`${on.url}/metrics`)).text(), 'deq_batch_rows_count') > 0);
    const m = await (await fetch(`${on.url}/metrics`)).text();
    const runs = metricTotal(m, 'deq_batch_rows_count'), rows = metricTotal(m, 'deq_batch_rows_sum');
    expect(rows / runs).toBeGreaterThan(1);
  });

  it('/score texts of different lengths share padded solves (state.pad) and score as without batching', async () => {
    const words = ['the', 'of', 'and', 'to', 'a', 'in', 'is', 'was', 'he', 'it', 'that', 'for', 'on', 'with', 'said'];
    // 2 to 15 tokens: one window each (tiny-lm's context is 16), every one a different length.
    const texts = Array.from({ length: 14 }, (_, k) => Array.from({ length: k + 1 }, (_, i) => words[(i * 7 + k) % 15]).join(' '));
    const body = (text: string, k: number) => ({ text, tol: [1e-2, 1e-3, 1e-4][k % 3] });
    const batched = await Promise.all(texts.map((t, k) => postJson(`${on.url}/v1/models/tiny-lm/score`, body(t, k)).then(json)));
    for (const [k, t] of texts.entries()) {
      const alone = (await json(await postJson(`${off.url}/v1/models/tiny-lm/score`, body(t, k)))).results[0];
      const got = batched[k].results[0];
      const where = `text ${k} (${alone.token_count} tokens)`;
      // Promised between --batching on and off: the same iterations, log-probabilities within 1e-5
      // relative (padding changes no arithmetic the solver does; the last float bits are ONNX Runtime's).
      expect(got.solver.iterations, where).toBe(alone.solver.iterations);
      expect(got.solver.converged, where).toBe(alone.solver.converged);
      expect(got.tokens.length, where).toBe(alone.tokens.length);
      for (const [i, a] of alone.tokens.entries()) expect(Math.abs(got.tokens[i].logprob - a.logprob), `${where}, token ${i}`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(a.logprob)));
    }
    // Windows of different lengths ran together (more than one row per run: each request is one
    // window of its own length) and were padded to tiny-lm's context.
    const lm = (name: string) => `${name}{model="tiny-lm"}`;
    await until(async () => metricTotal(await (await fetch(`${on.url}/metrics`)).text(), lm('deq_batch_pad_positions_total')) > 0);
    const m = await (await fetch(`${on.url}/metrics`)).text();
    expect(metricTotal(m, lm('deq_batch_rows_sum')) / metricTotal(m, lm('deq_batch_rows_count'))).toBeGreaterThan(1);
    expect(metricTotal(m, lm('deq_batch_positions_total'))).toBe(16 * metricTotal(m, lm('deq_batch_rows_sum')));
  });

  it('frees the rows of a client that goes away; the server keeps answering', async () => {
    const dispatched = poolEvent(on, 'dispatch', 'tiny-lm');
    const ac = new AbortController();
    const long = fetch(`${on.url}/v2/models/tiny-lm/infer`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: ac.signal,
      body: JSON.stringify(lmInferBody(4, 16, { ...NEVER_CONVERGES, deadline_ms: 20_000 })),
    }).catch((e: Error) => e);
    await dispatched;
    ac.abort();
    expect(await long).toBeInstanceOf(Error);
    // Its rows leave the solve at the next boundary: nothing is in flight long before its 20 s deadline.
    await until(async () => /deq_inflight_requests\{model="tiny-lm"\} 0\b/.test(await (await fetch(`${on.url}/metrics`)).text()), 5000);
    const ok = await postJson(`${on.url}/v2/models/tiny-lm/infer`, lmInferBody(1, 4));
    expect(ok.status).toBe(200);
  });
});

describe('continuous batching under faults and overload', () => {
  let s: TestServer;
  beforeAll(async () => {
    // Two rows per cell run; a worker holds up to twice that before the pool queues. The
    // never-converging solves are far over tiny-lm's cost budget, which would run them one at a
    // time (the fair share, test/server/request-path.test.ts): lifted here, where rows are the point.
    s = await startTestServer({ workers: 1, batching: 'on', batchRows: 2, maxQueueDelayMs: 0, queueSize: 1, retryAfterS: 3, maxIterCap: 100_000, modelCostBudget: Number.MAX_SAFE_INTEGER });
  });
  afterAll(async () => { await s?.cleanup(); });

  const long = (ms: number) => postJson(`${s.url}/v2/models/tiny-lm/infer`, lmInferBody(2, 16, { ...NEVER_CONVERGES, deadline_ms: ms }));

  it('sheds load with 503 and Retry-After once the worker and the queue are full', async () => {
    const first = poolEvent(s, 'dispatch', 'tiny-lm');
    const a = long(3000);
    await first;
    const second = poolEvent(s, 'dispatch', 'tiny-lm');
    const b = long(3000);
    await second; // 4 rows on the worker: full
    const queued = poolEvent(s, 'enqueue', 'tiny-lm');
    const c = long(3000);
    await queued;
    const refused = await long(3000);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('3');
    expect(refused.headers.get('x-deq-error-code')).toBe('DEQ_ERR_QUEUE_FULL');
    expect((await Promise.all([a, b, c])).map((r) => r.status)).toEqual([504, 504, 504]);
  });

  it('a worker crash fails only the requests of its batch; the replacement serves the next', async () => {
    const first = poolEvent(s, 'dispatch', 'tiny-lm');
    const a = long(5000);
    await first;
    const second = poolEvent(s, 'dispatch', 'tiny-lm');
    const b = long(5000);
    await second;
    expect(s.state.pool.crashBusyWorkers()).toBe(1);
    const failed = await Promise.all([a, b]);
    expect(failed.map((r) => [r.status, r.headers.get('x-deq-error-code')])).toEqual([[500, 'DEQ_ERR_WORKER_FAILED'], [500, 'DEQ_ERR_WORKER_FAILED']]);
    await until(async () => (await postJson(`${s.url}/v2/models/tiny-lm/infer`, lmInferBody(1, 4))).status === 200);
  });
});
