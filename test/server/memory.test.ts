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

it('RSS stays within 64 MB after a v2 request at the largest batch (64 × 64 tokens)', async () => {
  // Run in slices of --max-rows-per-run tokens, the head never sees 4,096 rows × 14,116.
  const v2 = async (batch: number) => {
    const tokens = Array.from({ length: batch * 64 }, (_, i) => 5 + ((i * 7) % 500));
    const body = {
      inputs: [{ name: 'tokens', datatype: 'INT64', shape: [batch, 64], data: tokens }, { name: 'targets', datatype: 'INT64', shape: [batch, 64], data: tokens }],
      outputs: [{ name: 'target_logprobs' }, { name: 'solver_iterations' }],
    };
    const r = await postJson(`${s.url}/v2/models/brown-lm-jr/infer`, body);
    expect(r.status).toBe(200);
    return (await r.json()) as { outputs: { shape: number[]; data: number[] }[]; parameters: { iterations: number } };
  };
  const small = await v2(1);
  const before = rssMb();
  const big = await v2(64);
  await new Promise((r) => setTimeout(r, 300));
  const after = rssMb();
  expect(after - before, `RSS ${before.toFixed(0)} → ${after.toFixed(0)} MB`).toBeLessThan(64);
  // Slices answer as one batch would: every row of the big batch is the one-row answer's row pattern.
  expect(big.outputs[0].shape).toEqual([64, 64]);
  expect(big.outputs[1].data).toHaveLength(64); // solver_iterations: one per row
  expect(big.outputs[0].data.slice(0, 64).map((v) => v.toFixed(3))).toEqual(small.outputs[0].data.map((v) => v.toFixed(3)));
}, 120_000);
