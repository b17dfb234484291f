import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LONG_TEXT, lmInferBody, NEVER_CONVERGES, poolEvent, postJson, startTestServer, type TestServer } from './helpers.js';

// One worker and a queue of one, so a single long solve fills the server.
let s: TestServer;
beforeAll(async () => {
  // Batching off: these tests are about the pool's own queue (one request per worker at a time).
  s = await startTestServer({ workers: 1, queueSize: 1, maxIterCap: 100_000, requestTimeoutMs: 10_000, retryAfterS: 2, batching: 'off' });
});
afterAll(async () => {
  await s?.cleanup();
});

const json = (r: Response): Promise<any> => r.json();
/** A solve on tiny-lm that iterates until its deadline (batch 8: each iteration costs a little). */
const longSolve = (deadlineMs: number) => postJson(`${s.url}/v2/models/tiny-lm/infer`, lmInferBody(8, 16, { ...NEVER_CONVERGES, deadline_ms: deadlineMs }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Starts a long solve and resolves once it is on the worker (ordered by the pool's dispatch event). */
async function startLongSolve(deadlineMs: number): Promise<{ response: Promise<Response>; done: () => boolean }> {
  const dispatched = poolEvent(s, 'dispatch', 'tiny-lm');
  let finished = false;
  const response = longSolve(deadlineMs).finally(() => { finished = true; });
  await dispatched;
  return { response, done: () => finished };
}

describe('solves run off the HTTP thread', () => {
  it('answers /v2/health/live promptly while a long solve runs', async () => {
    const long = await startLongSolve(1500);
    const latencies: number[] = [];
    // Probe for as long as the solve runs (paced, not timed: the solve's end stops the loop).
    while (!long.done()) {
      const a = performance.now();
      const r = await fetch(`${s.url}/v2/health/live`);
      expect(r.status).toBe(200);
      latencies.push(performance.now() - a);
      await sleep(50);
    }
    expect(latencies.length).toBeGreaterThan(5);
    expect(Math.max(...latencies)).toBeLessThan(250);
    const res = await long.response;
    expect(res.status).toBe(504);
    expect(res.headers.get('x-deq-error-code')).toBe('DEQ_ERR_DEADLINE_EXCEEDED');
  });
});

describe('deadlines', () => {
  it('ends a solve at its deadline with 504 DEQ_ERR_DEADLINE_EXCEEDED (policy "error")', async () => {
    const t0 = Date.now();
    const r = await postJson(`${s.url}/v1/models/tiny-lm/score`, { text: LONG_TEXT, ...NEVER_CONVERGES, deadline_ms: 400 });
    const elapsed = Date.now() - t0;
    expect(r.status).toBe(504);
    expect((await json(r)).code).toBe('DEQ_ERR_DEADLINE_EXCEEDED');
    expect(elapsed).toBeGreaterThanOrEqual(380);
    expect(elapsed).toBeLessThan(3000);
  });

  it('fails a queued request whose deadline passes before a worker is free', async () => {
    const long = await startLongSolve(3000);
    const queued = await postJson(`${s.url}/v2/models/tiny-image/infer`, {
      parameters: { deadline_ms: 200 },
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data: new Array(64).fill(0) }],
    });
    expect(queued.status).toBe(504);
    expect(long.done()).toBe(false); // answered by the queue timer while the long solve still ran
    expect((await long.response).status).toBe(504);
  });
});

describe('bounded queue', () => {
  it('answers 503 DEQ_ERR_QUEUE_FULL with Retry-After when the model queue is full', async () => {
    const running = await startLongSolve(3000);
    const enqueued = poolEvent(s, 'enqueue', 'tiny-lm');
    const queued = longSolve(3500);
    await enqueued;
    const refused = await longSolve(1500);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('2');
    expect(await json(refused)).toEqual({ error: expect.any(String) });
    expect(refused.headers.get('x-deq-error-code')).toBe('DEQ_ERR_QUEUE_FULL');
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toMatch(/deq_queued_requests\{model="tiny-lm"\} 1/);
    expect(metrics).toMatch(/deq_inflight_requests\{model="tiny-lm"\} 1/);
    expect(running.done()).toBe(false);
    expect((await running.response).status).toBe(504);
    expect((await queued).status).toBe(504);
    // Drained: accepted again.
    const ok = await postJson(`${s.url}/v2/models/tiny-lm/infer`, lmInferBody(1, 4));
    expect(ok.status).toBe(200);
  });
});

describe('a busy worker holds the next request (batching off)', () => {
  const image = (deadlineMs = 10_000) => ({ parameters: { deadline_ms: deadlineMs }, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data: new Array(64).fill(0.25) }] });
  const metric = async (name: string) => Number(new RegExp(`${name}\\{model="tiny-image"\\} (\\d+)`).exec(await (await fetch(`${s.url}/metrics`)).text())?.[1]);

  it('is sent to the worker at once, counts as queued, and runs as soon as the solve before it ends', async () => {
    const long = await startLongSolve(800);
    const held = poolEvent(s, 'dispatch', 'tiny-image');
    const next = postJson(`${s.url}/v2/models/tiny-image/infer`, image());
    await held; // on the worker already, while the long solve runs
    expect(long.done()).toBe(false);
    expect(await metric('deq_queued_requests')).toBe(1);
    expect(await metric('deq_inflight_requests')).toBe(0);
    expect((await next).status).toBe(200);
    expect((await long.response).status).toBe(504);
  });

  it('is cancelled without running when its client goes away', async () => {
    const long = await startLongSolve(1500);
    const held = poolEvent(s, 'dispatch', 'tiny-image');
    const client = new AbortController();
    const next = fetch(`${s.url}/v2/models/tiny-image/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(image()), signal: client.signal }).catch(() => 'aborted');
    await held;
    client.abort();
    expect(await next).toBe('aborted');
    // Answered by the worker between iterations of the long solve, not after it.
    while (await metric('deq_queued_requests') !== 0) await sleep(20);
    expect(long.done()).toBe(false);
    expect((await long.response).status).toBe(504);
  });

  it('goes back to the queue when its worker dies before starting it, and the replacement serves it', async () => {
    const long = await startLongSolve(3000);
    const held = poolEvent(s, 'dispatch', 'tiny-image');
    const next = postJson(`${s.url}/v2/models/tiny-image/infer`, image(9_000));
    await held;
    expect(s.state.pool.crashBusyWorkers()).toBe(1);
    expect((await long.response).status).toBe(500);
    const r = await next;
    expect(r.status).toBe(200);
    const body = (await r.json()) as { outputs: { data: number[] }[] };
    expect(body.outputs[0].data.every((v) => Number.isFinite(v))).toBe(true);
  });
});

describe('worker failure', () => {
  it('fails the request with 500 DEQ_ERR_WORKER_FAILED and restarts the worker', async () => {
    const long = await startLongSolve(3000);
    expect(s.state.pool.crashBusyWorkers()).toBe(1);
    const r = await long.response;
    expect(r.status).toBe(500);
    expect(r.headers.get('x-deq-error-code')).toBe('DEQ_ERR_WORKER_FAILED');
    // The replacement loads and warms up, then serves again.
    const until = Date.now() + 10_000;
    let status = 0;
    while (Date.now() < until) {
      status = (await postJson(`${s.url}/v2/models/tiny-lm/infer`, lmInferBody(1, 4))).status;
      if (status === 200) break;
      await sleep(100);
    }
    expect(status).toBe(200);
    expect((await fetch(`${s.url}/v2/health/ready`)).status).toBe(200);
  });
});

describe('deadline policy "best-effort"', () => {
  it('answers with the best iterate, marked not converged', async () => {
    const be = await startTestServer({ onDeadline: 'best-effort', maxIterCap: 100_000 }, ['tiny-lm']);
    try {
      const r = await postJson(`${be.url}/v2/models/tiny-lm/infer`, lmInferBody(8, 16, { ...NEVER_CONVERGES, deadline_ms: 300 }));
      expect(r.status).toBe(200);
      const body = await json(r);
      expect(body.parameters).toMatchObject({ deadline_exceeded: true, all_converged: false })
      expect(body.parameters.converged).toBe(false);
      for (const o of body.outputs) for (const v of o.data) expect(Number.isFinite(v)).toBe(true);
      const stops = await json(await postJson(`${be.url}/v2/models/tiny-lm/infer`, { ...lmInferBody(2, 16, { ...NEVER_CONVERGES, deadline_ms: 200 }), outputs: [{ name: 'solver_converged' }, { name: 'solver_stop_reason' }] }));
      expect(stops.outputs[0].data).toEqual([false, false]);
      expect(stops.outputs[1].data).toEqual(['deadline', 'deadline']);
      const sc = await json(await postJson(`${be.url}/v1/models/tiny-lm/score`, { text: LONG_TEXT, ...NEVER_CONVERGES, deadline_ms: 200 }));
      expect(sc.solver).toMatchObject({ converged: false, deadline_exceeded: true });
    } finally {
      await be.cleanup();
    }
  });
});
