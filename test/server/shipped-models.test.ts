// The real server on the shipped bundles (models/), as `deq-serve serve` runs by default.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, startServer, type RunningServer } from '../../dist/server/index.js';
import { readFashionMnist, type ImageSet } from '../../src/eval/fashion-mnist.js';
import { postJson, ROOT } from './helpers.js';
import { FASHION_MNIST_SLICE } from '../helpers/fixtures.js';

describe('serving the shipped models', () => {
  let s: RunningServer;
  let set: ImageSet;
  beforeAll(async () => {
    set = await readFashionMnist('test', FASHION_MNIST_SLICE);
    s = await startServer(loadConfig([], {}, { port: 0, host: '127.0.0.1', modelsDir: `${ROOT}models`, workers: 1, logLevel: 'silent' }));
  }, 120_000);
  afterAll(async () => { await s?.close(); });

  it('lists every shipped bundle as ready', async () => {
    const body = await (await fetch(`${s.url}/v1/models`)).json() as { models: { name: string; ready: boolean }[] };
    expect(body.models.map((m) => m.name).sort()).toEqual(['brown-lm-jr', 'fashion-mnist-jr', 'fashion-mnist-plain']);
    expect(body.models.every((m) => m.ready)).toBe(true);
  });

  it('classifies real Fashion-MNIST test images sent as PNG', async () => {
    const labels = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
    let correct = 0;
    const n = 20;
    for (let i = 0; i < n; i++) {
      const png = await sharp(Buffer.from(set.images.subarray(i * 784, (i + 1) * 784)), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
      const res = await fetch(`${s.url}/v1/models/fashion-mnist-jr/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });
      expect(res.status).toBe(200);
      const body = await res.json() as { label: string; solver: { converged: boolean; iterations: number } };
      if (body.label === labels[set.labels[i]]) correct++;
      expect(body.solver.iterations).toBeGreaterThan(0);
    }
    // The bundle measures 93.22% on the whole test set through the same runtime.
    expect(correct).toBeGreaterThanOrEqual(15);
  });

  it('scores text with the Brown language model', async () => {
    const res = await postJson(`${s.url}/v1/models/brown-lm-jr/score`, { text: 'The jury said it did not find any evidence.' });
    expect(res.status).toBe(200);
    const body = await res.json() as { results: { tokens: { token: string; logprob: number }[]; perplexity: number }[] };
    const r = body.results[0];
    expect(r.tokens.map((t) => t.token)).toEqual(['The', 'jury', 'said', 'it', 'did', 'not', 'find', 'any', 'evidence', '.', '</s>']);
    expect(r.tokens.every((t) => Number.isFinite(t.logprob) && t.logprob < 0)).toBe(true);
    expect(Number.isFinite(r.perplexity)).toBe(true);
  });
});
