// The shipped Fashion-MNIST bundles, run through the TypeScript runtime on real
// test images (the first 1,000 of the test set ship as a fixture slice).
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluateSet, type SetResult } from '../../src/eval/image-eval.js';
import { readFashionMnist, type ImageSet } from '../../src/eval/fashion-mnist.js';
import { checkParity, DeqModel } from '../../src/runtime/index.js';
import { FASHION_MNIST_SLICE } from '../helpers/fixtures.js';

const MODELS = resolve(import.meta.dirname, '..', '..', 'models');
const IMAGES = 500;

describe('shipped Fashion-MNIST models', () => {
  let set: ImageSet;
  const models: Record<string, DeqModel> = {};
  // Each test asks for the evaluation it needs; a run is shared, never a test's precondition.
  const runs = new Map<string, Promise<SetResult>>();
  const evaluated = (name: string): Promise<SetResult> => {
    let r = runs.get(name);
    if (!r) runs.set(name, (r = evaluateSet(models[name], set, IMAGES, 50, {})));
    return r;
  };

  beforeAll(async () => {
    set = await readFashionMnist('test', FASHION_MNIST_SLICE);
    for (const name of ['fashion-mnist-jr', 'fashion-mnist-plain']) models[name] = await DeqModel.load(resolve(MODELS, name));
  });
  afterAll(async () => {
    await Promise.all(Object.values(models).map((m) => m.release()));
  });

  for (const name of ['fashion-mnist-jr', 'fashion-mnist-plain']) {
    it(`${name} passes parity against its PyTorch reference`, async () => {
      const report = await checkParity(models[name]);
      expect(report.passed).toBe(true);
      expect(report.maxDeviation).toBeLessThanOrEqual(1e-3);
    });

    it(`${name} classifies the first ${IMAGES} test images well at its shipped solver defaults`, async () => {
      const r = await evaluated(name);
      // Measured on these 500 images: 94.8% for fashion-mnist-jr (93.22% on all 10,000),
      // 91.0% for fashion-mnist-plain (89.81%).
      expect(r.accuracy).toBeGreaterThan(name === 'fashion-mnist-jr' ? 0.92 : 0.85);
      expect(r.diverged).toBe(0);
    }, 120_000);
  }

  it('the Jacobian-regularized model needs at most half the solver steps of its unregularized twin', async () => {
    const [jr, plain] = await Promise.all([evaluated('fashion-mnist-jr'), evaluated('fashion-mnist-plain')]);
    expect(jr.nfe.mean).toBeLessThanOrEqual(plain.nfe.mean / 2);
    expect(jr.notConverged).toBe(0);
  }, 120_000);
});
