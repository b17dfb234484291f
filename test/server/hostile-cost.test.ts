// Regression tests for issue #12 items 1 and 2: one small request must not take
// the server down by the size of its answer or the work it asks for.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lmInferBody, LONG_TEXT, NEVER_CONVERGES, postJson, startTestServer, type TestServer } from './helpers.js';

const json = (r: Response): Promise<any> => r.json();

/** Polls liveness every 20 ms until `done` settles; returns the slowest answer in ms. */
async function slowestLiveness(url: string, done: Promise<unknown>): Promise<number> {
  let finished = false;
  void done.finally(() => { finished = true; });
  let worst = 0;
  while (!finished) {
    const t0 = performance.now();
    const r = await fetch(`${url}/v2/health/live`);
    await r.arrayBuffer();
    worst = Math.max(worst, performance.now() - t0);
    await new Promise((r) => setTimeout(r, 20));
  }
  return worst;
}

describe('v2 output cap and serialization (item 1)', () => {
  let s: TestServer;
  beforeAll(async () => {
    // tiny-lm's logprobs are batch × length × 20; a batch cap of 4096 lets one
    // request ask for 4096 × 16 × 20 = 1,310,720 values.
    s = await startTestServer({ maxBatch: 4096, maxOutputElements: 1_376_256, bodyLimitBytes: 4 << 20, maxIterCap: 100_000 }, ['tiny-lm']);
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  it('refuses outputs over the cap with 413 before solving', async () => {
    const body = { ...lmInferBody(4096, 16, { ...NEVER_CONVERGES, deadline_ms: 5000 }), outputs: [{ name: 'logprobs' }, { name: 'target_logprobs' }, { name: 'topk_ids' }] };
    const t0 = performance.now();
    const r = await postJson(`${s.url}/v2/models/tiny-lm/infer`, body);
    expect(r.status).toBe(413);
    expect(r.headers.get('x-deq-error-code')).toBe('DEQ_ERR_OUTPUT_TOO_LARGE');
    expect((await json(r)).error).toMatch(/1703936 values .*1376256-value limit/);
    // A solve that never converges would have run to its 5 s deadline first.
    expect(performance.now() - t0).toBeLessThan(2500);
  });

  it('streams a large answer without holding the event loop, and the answer is whole', async () => {
    const batch = 4096, length = 16;
    const body = { ...lmInferBody(batch, length, { max_iter: 3 }), outputs: [{ name: 'logprobs' }, { name: 'target_logprobs' }] };
    const targets = body.inputs[1].data as number[];
    // The client shares this process: it keeps the bytes and parses them only
    // after polling ends, so only the server's work is on the event loop.
    const req = postJson(`${s.url}/v2/models/tiny-lm/infer`, body).then(async (r) => ({ status: r.status, bytes: await r.arrayBuffer() }));
    const worst = await slowestLiveness(s.url, req);
    const { status, bytes } = await req;
    const out = JSON.parse(Buffer.from(bytes).toString('utf8'));
    expect(status).toBe(200);
    // One 1.3 M-value JSON.stringify holds the thread ~0.5–1 s here; chunks of 16 Ki values do not.
    expect(worst).toBeLessThan(250);
    const [logprobs, target] = out.outputs;
    expect(logprobs.shape).toEqual([batch, length, 20]);
    expect(logprobs.data).toHaveLength(batch * length * 20);
    expect(target.data).toHaveLength(batch * length);
    // The streamed tensors agree with each other: target_logprobs[r] = logprobs[r, target[r]].
    for (const row of [0, 1, 777, batch * length - 1]) {
      expect(target.data[row]).toBeCloseTo(logprobs.data[row * 20 + targets[row]], 5);
    }
  }, 60_000);
});

describe('/score admission by cost and deadline messages (item 2)', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ maxScoreWindows: 6, maxIterCap: 100_000 }, ['tiny-lm']);
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  it('refuses a request over the window budget with 413, before any solve', async () => {
    // 64 words (+ the bos-shifted windows) at context 16, stride 8: 8 windows per text.
    const t0 = performance.now();
    const r = await postJson(`${s.url}/v1/models/tiny-lm/score`, { texts: [LONG_TEXT, LONG_TEXT], ...NEVER_CONVERGES, deadline_ms: 5000 });
    expect(r.status).toBe(413);
    expect(r.headers.get('x-deq-error-code')).toBe('DEQ_ERR_TOO_COSTLY');
    expect((await json(r)).error).toMatch(/needs 16 context windows .* over the 6-window limit/);
    expect(performance.now() - t0).toBeLessThan(2500);
    const ok = await postJson(`${s.url}/v1/models/tiny-lm/score`, { text: 'the of and to a in is was' });
    expect(ok.status).toBe(200);
  });

  it('says where the time went when the deadline passes', async () => {
    const words = LONG_TEXT.split(' ').slice(0, 40).join(' '); // 5 windows: several solves at the default --score-batch
    const r = await postJson(`${s.url}/v1/models/tiny-lm/score`, { text: words, ...NEVER_CONVERGES, deadline_ms: 300 });
    expect(r.status).toBe(504);
    const { error } = await json(r);
    expect(error).toMatch(/\d+ ms into the request: \d+ solve\(s\) done, \d+ ms on a worker and \d+ ms queued for one/);
  });
});
