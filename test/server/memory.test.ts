// Regression test for issue #12 item 3: memory comes back after one large request.
// A 20,000-character text used to add ~620 MB of RSS for good (ONNX Runtime's
// arena grown to the head's batch × 64 × 14,116 log-probabilities). Uses the
// shipped brown-lm-jr, the model where that happened; tiny-lm's vocabulary is too
// small to show it.
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig, startServer, type RunningServer } from '../../dist/server/index.js';
import { postJson, ROOT } from './helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const rssMb = () => { gc(); return process.memoryUsage().rss / 2 ** 20; };

let s: RunningServer;
let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'deq-mem-'));
  await cp(join(ROOT, 'models/brown-lm-jr'), join(dir, 'brown-lm-jr'), { recursive: true });
  // Default settings: the test holds the defaults to the target.
  s = await startServer(loadConfig([], {}, { port: 0, host: '127.0.0.1', modelsDir: dir, workers: 1, logLevel: 'silent' }));
});
afterAll(async () => {
  await s?.close();
  await rm(dir, { recursive: true, force: true });
});

it('RSS returns to within 64 MB of its level before one 20,000-character /score request', async () => {
  const score = async (text: string) => {
    const r = await postJson(`${s.url}/v1/models/brown-lm-jr/score`, { text });
    expect(r.status).toBe(200);
    await r.arrayBuffer();
  };
  for (let i = 0; i < 3; i++) await score('the jury said it did find that the city executive committee had over-all charge of the election');
  const before = rssMb();
  await score('a '.repeat(10_000));
  await new Promise((r) => setTimeout(r, 300));
  const after = rssMb();
  expect(after - before, `RSS ${before.toFixed(0)} → ${after.toFixed(0)} MB`).toBeLessThan(64);
}, 120_000);
