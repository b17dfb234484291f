// Regression tests for issue #12 items 1 and 2: one small request must not take
// the server down by the size of its answer or the work it asks for.
import { spawn } from 'node:child_process';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, startServer, type RunningServer } from '../../dist/server/index.js';
import { LONG_TEXT, NEVER_CONVERGES, postJson, ROOT, startTestServer, type TestServer } from './helpers.js';

const json = (r: Response): Promise<any> => r.json();

describe('v2 output cap and serialization (item 1)', () => {
  // The shipped brown-lm-jr at the default settings: its full logprobs are
  // batch × length × 14,116 values, so one small request can ask for millions.
  let s: RunningServer;
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'deq-out-'));
    await cp(join(ROOT, 'models/brown-lm-jr'), join(dir, 'brown-lm-jr'), { recursive: true });
    s = await startServer(loadConfig([], {}, { port: 0, host: '127.0.0.1', modelsDir: dir, workers: 1, logLevel: 'silent', maxIterCap: 100_000 }));
  });
  afterAll(async () => {
    await s?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses the issue\'s request (logprobs at batch 32 × 64) with 413 before solving', async () => {
    const tokens = Array.from({ length: 32 * 64 }, (_, i) => 5 + (i % 300));
    const body = {
      parameters: { ...NEVER_CONVERGES, deadline_ms: 5000 },
      inputs: [{ name: 'tokens', datatype: 'INT64', shape: [32, 64], data: tokens }, { name: 'targets', datatype: 'INT64', shape: [32, 64], data: tokens }],
      outputs: [{ name: 'logprobs' }],
    };
    const t0 = performance.now();
    const r = await postJson(`${s.url}/v2/models/brown-lm-jr/infer`, body);
    expect(r.status).toBe(413);
    expect(r.headers.get('x-deq-error-code')).toBe('DEQ_ERR_OUTPUT_TOO_LARGE');
    expect((await json(r)).error).toMatch(/28909568 values .*1048576-value limit/);
    // A solve that never converges would have run to its 5 s deadline first.
    expect(performance.now() - t0).toBeLessThan(2500);
  });

  it('streams a large answer without holding the event loop, and the answer is whole', async () => {
    // 1 × 64 × 14,116 = 903,424 values (16.9 MB of JSON), under the default cap.
    const measure = async () => {
      const child = spawn(process.execPath, [fileURLToPath(new URL('./big-answer-client.mjs', import.meta.url)), s.url, 'brown-lm-jr', '1', '64', '14116'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      await new Promise((resolve) => child.on('exit', resolve));
      return JSON.parse(out);
    };
    // A timing check on a box whose 2 cores are shared (load average up to 17 in the
    // full suite, with stalls of 2 s while nothing but a solve ran): up to three tries.
    // Serialized in one piece, the answer held the thread 1.4 s on every try.
    let r = await measure();
    for (let tries = 1; tries < 3 && r.worst >= 250; tries++) r = await measure();
    expect(r.status).toBe(200);
    expect(r.probes).toBeGreaterThan(3);
    expect(r.worst, `slowest liveness ${Math.round(r.worst)} ms at ${Math.round(r.worstAt)} ms; answer headers at ${Math.round(r.headersAt)} ms, end at ${Math.round(r.endAt)} ms`).toBeLessThan(250);
    expect(r.shape).toEqual([1, 64, 14116]);
    expect(r.dataLength).toBe(64 * 14116);
    expect(r.targetLength).toBe(64);
    expect(r.mismatches).toBe(0);
  }, 120_000);
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
    expect((await json(r)).error).toMatch(/needs more than 8 context windows \(the first 1 of 2 texts: .* over the 6-window limit/);
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
