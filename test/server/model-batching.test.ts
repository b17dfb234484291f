// #20 over HTTP: batching chosen per model (--model-batching). One worker serves tiny-image with
// continuous batching and tiny-lm with batching off: each answers as it would alone, each reports
// its own mode, only the batching model's requests share cell runs, and the worker holds the
// unbatched model's requests one at a time without holding the batching model's behind them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lmInferBody, makeModelsDir, NEVER_CONVERGES, poolEvent, postJson, startTestServer, until, type TestServer } from './helpers.js';
import { loadConfig, startServer } from '../../dist/server/index.js';
import type { BatchStats } from '../../src/server/pool.js';

const json = (r: Response): Promise<any> => r.json();

/** v2 requests for tiny-image with their own inputs, tolerances, caps and methods. */
function imageRequests(count: number) {
  return Array.from({ length: count }, (_, k) => ({
    parameters: { tol: [1e-2, 1e-3, 1e-4, 1e-5][k % 4], max_iter: 5 + ((k * 7) % 30), solver: k % 3 === 0 ? 'anderson' : 'broyden' },
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1 + (k % 2), 1, 8, 8], data: Array.from({ length: 64 * (1 + (k % 2)) }, (_, i) => Math.cos(i * 0.29 + k) * 1.5) }],
  }));
}

const WORDS = ['the', 'of', 'and', 'to', 'a', 'in', 'is', 'was', 'he', 'it', 'that', 'for', 'on', 'with', 'said'];
const texts = Array.from({ length: 8 }, (_, k) => Array.from({ length: k + 3 }, (_, i) => WORDS[(i * 7 + k) % 15]).join(' '));

/** Within 1e-5 relative, element by element. */
function expectClose(got: number[], want: number[], where: string): void {
  expect(got.length, where).toBe(want.length);
  for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i]), `${where}[${i}]`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want[i])));
}

describe('batching chosen per model (#20)', () => {
  let mixed: TestServer, off: TestServer;
  /** Models the mixed server's workers reported batching statistics for (schedulers only report them). */
  const batchedModels = new Set<string>();
  beforeAll(async () => {
    // The default stays off; tiny-image alone batches. The never-converging tiny-lm solves below
    // are far over its cost budget, whose fair share would keep them in the queue: lifted here.
    mixed = await startTestServer({ workers: 1, modelBatching: { 'tiny-image': 'on' }, batchRows: 8, maxQueueDelayMs: 5, maxIterCap: 100_000, modelCostBudget: Number.MAX_SAFE_INTEGER });
    off = await startTestServer({ workers: 1, batching: 'off' });
    mixed.state.pool.events.on('batch', (b: BatchStats) => batchedModels.add(b.model));
  });
  afterAll(async () => {
    await mixed?.cleanup();
    await off?.cleanup();
  });

  it('reports each model\'s mode in /v1/models, and the default in deq_server_info', async () => {
    expect((await json(await fetch(`${mixed.url}/v1/models/tiny-image`))).batching).toBe('on');
    expect((await json(await fetch(`${mixed.url}/v1/models/tiny-lm`))).batching).toBe('off');
    const list = (await json(await fetch(`${mixed.url}/v1/models`))).models as { name: string; batching: string }[];
    expect(Object.fromEntries(list.map((m) => [m.name, m.batching]))).toEqual({ 'tiny-image': 'on', 'tiny-lm': 'off' });
    expect(await (await fetch(`${mixed.url}/metrics`)).text()).toMatch(/deq_server_info\{[^}]*batching="off"/);
    expect(mixed.state.pool.modelInfo.get('tiny-image')?.batching).toBe('on');
    expect(mixed.state.pool.modelInfo.get('tiny-lm')?.batching).toBe('off');
  });

  it('serves both models at once, each as it is answered alone; only the batching model shares cell runs', async () => {
    const images = imageRequests(12);
    const [gotImages, gotTexts] = await Promise.all([
      Promise.all(images.map((b) => postJson(`${mixed.url}/v2/models/tiny-image/infer`, b).then(json))),
      Promise.all(texts.map((text) => postJson(`${mixed.url}/v1/models/tiny-lm/score`, { text, tol: 1e-3 }).then(json))),
    ]);
    for (const [k, b] of images.entries()) {
      const alone = await json(await postJson(`${off.url}/v2/models/tiny-image/infer`, b));
      expect(gotImages[k].parameters.iterations, `image ${k}`).toEqual(alone.parameters.iterations);
      expectClose(gotImages[k].outputs[0].data, alone.outputs[0].data, `image ${k}`);
    }
    for (const [k, text] of texts.entries()) {
      const alone = (await json(await postJson(`${off.url}/v1/models/tiny-lm/score`, { text, tol: 1e-3 }))).results[0];
      const got = gotTexts[k].results[0];
      expect(got.solver.iterations, `text ${k}`).toBe(alone.solver.iterations);
      expectClose(got.tokens.map((t: { logprob: number }) => t.logprob), alone.tokens.map((t: { logprob: number }) => t.logprob), `text ${k}`);
    }
    await until(async () => batchedModels.has('tiny-image'));
    // Absence needs time: workers report every 200 ms, so two reports' worth after the last answer.
    await new Promise((r) => setTimeout(r, 500));
    expect([...batchedModels]).toEqual(['tiny-image']);
  });

  it('holds the unbatched model\'s requests one at a time, not the batching model\'s behind them', async () => {
    const pool = mixed.state.pool;
    const ac = new AbortController();
    const long = () => fetch(`${mixed.url}/v2/models/tiny-lm/infer`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: ac.signal,
      body: JSON.stringify(lmInferBody(1, 8, { ...NEVER_CONVERGES, deadline_ms: 20_000 })),
    }).catch((e: Error) => e);
    const first = poolEvent(mixed, 'dispatch', 'tiny-lm');
    const a = long();
    await first;
    const second = poolEvent(mixed, 'dispatch', 'tiny-lm');
    const b = long();
    await second;
    // The second is on the worker, held behind the first: it counts as queued.
    expect([pool.inFlight('tiny-lm'), pool.queued('tiny-lm')]).toEqual([1, 1]);
    let lmSettled = false;
    void Promise.all([a, b]).then(() => { lmSettled = true; });
    let imageWaited = 0;
    const onEnqueue = (m: string) => { if (m === 'tiny-image') imageWaited++; };
    pool.events.on('enqueue', onEnqueue);
    // An image request starts at once beside the running solve (neither queued nor held), and is
    // answered while that solve still runs.
    const image = await postJson(`${mixed.url}/v2/models/tiny-image/infer`, imageRequests(1)[0]);
    pool.events.off('enqueue', onEnqueue);
    expect(image.status).toBe(200);
    expect(lmSettled).toBe(false);
    expect(imageWaited).toBe(0);
    ac.abort();
    await Promise.all([a, b]);
    await until(async () => pool.inFlight() === 0 && pool.queued() === 0, 5000);
  });

  it('a worker crash fails the requests it ran, of both models; the one it held goes to the replacement', async () => {
    const pool = mixed.state.pool;
    const lmDispatched = poolEvent(mixed, 'dispatch', 'tiny-lm');
    const running = postJson(`${mixed.url}/v2/models/tiny-lm/infer`, lmInferBody(1, 8, { ...NEVER_CONVERGES, deadline_ms: 20_000 }));
    await lmDispatched;
    const heldDispatched = poolEvent(mixed, 'dispatch', 'tiny-lm');
    const held = postJson(`${mixed.url}/v2/models/tiny-lm/infer`, lmInferBody(1, 4));
    await heldDispatched;
    const imageDispatched = poolEvent(mixed, 'dispatch', 'tiny-image');
    const image = postJson(`${mixed.url}/v2/models/tiny-image/infer`, { ...imageRequests(1)[0], parameters: { ...NEVER_CONVERGES, deadline_ms: 20_000 } });
    await imageDispatched;
    expect([pool.inFlight(), pool.queued()]).toEqual([2, 1]);
    expect(pool.crashBusyWorkers()).toBe(1);
    const [r, i] = await Promise.all([running, image]);
    expect([r.status, r.headers.get('x-deq-error-code')]).toEqual([500, 'DEQ_ERR_WORKER_FAILED']);
    expect([i.status, i.headers.get('x-deq-error-code')]).toEqual([500, 'DEQ_ERR_WORKER_FAILED']);
    expect((await held).status).toBe(200);
  });
});

describe('--model-batching at startup (#20)', () => {
  it('a model not served fails the start, naming the setting, the model and the models served', async () => {
    const { dir, cleanup } = await makeModelsDir(['tiny-image']);
    try {
      const config = loadConfig(['--model-batching', 'tiny-image=on,tiny-imag=off'], {}, { port: 0, modelsDir: dir, workers: 1, logLevel: 'silent' });
      const err = await startServer(config).then(() => null, (e: { code: string; message: string }) => e);
      expect(err?.code).toBe('DEQ_ERR_CONFIG_INVALID');
      expect(err?.message).toBe('invalid setting --model-batching: no model named tiny-imag (serving tiny-image)');
    } finally {
      await cleanup();
    }
  });
});
