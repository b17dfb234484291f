// The playground draws a solve's residual curve from replays: the same request with max_iter = k
// (web/playground/residual.ts). This checks what that rests on: the k-th replay's residual is the
// lowest residual of the full solve's first k iterations, as the solver's own trace records them.
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig, startServer, type RunningServer } from '../../dist/server/index.js';
import { readFashionMnist } from '../../src/eval/fashion-mnist.js';
import { ImageClassifier } from '../../src/pipelines/image-classification.js';
import { DeqModel } from '../../src/runtime/deq-model.js';
import { FASHION_MNIST_SLICE } from '../helpers/fixtures.js';
import { ROOT } from './helpers.js';

const BUNDLE = join(ROOT, 'models', 'fashion-mnist-plain');
let dir: string;
let s: RunningServer;
let model: DeqModel;
let png: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'deq-replay-'));
  await cp(BUNDLE, join(dir, 'fashion-mnist-plain'), { recursive: true });
  s = await startServer(loadConfig([], {}, { port: 0, host: '127.0.0.1', modelsDir: dir, workers: 1, logLevel: 'silent' }));
  model = await DeqModel.load(BUNDLE);
  const set = await readFashionMnist('test', FASHION_MNIST_SLICE);
  png = await sharp(Buffer.from(set.images.subarray(0, 784)), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
}, 60_000);
afterAll(async () => {
  await s?.close();
  await model?.release();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function classify(query: string): Promise<{ iterations: number; residual: number; converged: boolean }> {
  const res = await fetch(`${s.url}/v1/models/fashion-mnist-plain/classify${query}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });
  expect(res.status).toBe(200);
  return ((await res.json()) as { solver: { iterations: number; residual: number; converged: boolean } }).solver;
}

it('replay k answers the lowest residual of the full solve\'s first k iterations', async () => {
  const full = await classify('');
  // The plain model needs several iterations on this image, or there is no curve to check.
  expect(full.iterations).toBeGreaterThan(5);
  const classifier = new ImageClassifier(model.manifest);
  const input = await classifier.preprocess(png, { maxPixels: 1 << 20 });
  const traced = await model.infer({ input, batch: 1, outputs: [classifier.logitsOutput], solver: { trace: true } });
  const trace = traced.solver.trace![0];
  expect(trace.length).toBe(full.iterations);
  let best = Infinity;
  for (let k = 1; k <= full.iterations; k++) {
    best = Math.min(best, trace[k - 1]);
    const replay = await classify(`?max_iter=${k}`);
    expect(replay.iterations).toBe(k);
    expect(replay.converged).toBe(k === full.iterations);
    expect(Math.abs(replay.residual - best) / best, `k = ${k}`).toBeLessThan(1e-6);
  }
});
