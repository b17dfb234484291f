// Issue 23: warm starts. A solve started from its own fixed point stops after one evaluation;
// one started from garbage still reaches the same answer; a batched or scheduled warm start
// gives each sample its solo result.
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeqError } from '../../src/errors.js';
import { readFashionMnist } from '../../src/eval/fashion-mnist.js';
import { normalizePixels } from '../../src/preprocess/normalize.js';
import { argmax, DeqModel, Scheduler, type InferResult } from '../../src/runtime/index.js';
import { FASHION_MNIST_SLICE } from '../helpers/fixtures.js';
import { relDiffL2, rng } from '../helpers/float.js';

const IMAGES = 6;

for (const [name, TOL] of [['fashion-mnist-jr', 1e-4], ['fashion-mnist-plain', 1e-3]] as const) {
  describe(`warm starts on ${name}`, () => {
    let model: DeqModel;
    let input: Float32Array;
    let cold: InferResult;
    beforeAll(async () => {
      model = await DeqModel.load(resolve(import.meta.dirname, '..', '..', 'models', name));
      const set = await readFashionMnist('test', FASHION_MNIST_SLICE);
      input = new Float32Array(784 * IMAGES);
      for (let k = 0; k < IMAGES; k++) normalizePixels(set.images.subarray(k * 784, (k + 1) * 784), model.manifest.preprocess!, input, k * 784);
      cold = await model.infer({ input, batch: IMAGES, returnState: true, solver: { tol: TOL, maxIter: 60 } });
    }, 60_000);
    afterAll(async () => { await model.release(); });

    const logits = (r: InferResult, i: number) => (r.outputs.logits.data as Float32Array).subarray(i * 10, (i + 1) * 10);

    it('from the exact fixed point, every sample converges in one evaluation with the same answer', async () => {
      expect(Array.from(cold.solver.converged)).toEqual(new Array(IMAGES).fill(1));
      const warm = await model.infer({ input, batch: IMAGES, z0: cold.state!.data as Float32Array, returnState: true, solver: { tol: TOL, maxIter: 60 } });
      expect(Array.from(warm.solver.iterations)).toEqual(new Array(IMAGES).fill(1));
      for (let i = 0; i < IMAGES; i++) expect(relDiffL2(logits(warm, i), logits(cold, i))).toBeLessThan(1e-6);
    });

    it('from garbage, every sample still converges to the same answer', async () => {
      const r = rng(23);
      // Uniform noise at twice the fixed points' RMS (about 1 on both models), nothing like a fixed point.
      const garbage = Float32Array.from({ length: cold.state!.data.length }, () => (r() * 2 - 1) * 2);
      const warm = await model.infer({ input, batch: IMAGES, z0: garbage, solver: { tol: TOL, maxIter: 100 } });
      expect(Array.from(warm.solver.converged)).toEqual(new Array(IMAGES).fill(1));
      for (let i = 0; i < IMAGES; i++) {
        expect(argmax(logits(warm, i))).toBe(argmax(logits(cold, i)));
        expect(relDiffL2(logits(warm, i), logits(cold, i))).toBeLessThan(1e-2);
      }
    });

    it('continuous batching: a warm-started request gets its solo iterations and answer', async () => {
      const r = rng(5);
      const z0 = Float32Array.from(cold.state!.data as Float32Array, (v) => v + (r() - 0.5) * 0.2);
      const n = z0.length / IMAGES;
      const solo = await model.infer({ input, batch: IMAGES, z0, solver: { tol: TOL, maxIter: 60 } });
      const sched = new Scheduler(model, { mode: 'continuous', maxRows: 4, maxQueueDelayMs: 2 });
      const parts = await Promise.all(Array.from({ length: IMAGES }, (_, i) => sched.submit({
        input: input.subarray(i * 784, (i + 1) * 784), batch: 1, z0: z0.subarray(i * n, (i + 1) * n), solver: { tol: TOL, maxIter: 60 },
      }).result));
      for (let i = 0; i < IMAGES; i++) {
        expect(parts[i].solver.iterations[0]).toBe(solo.solver.iterations[i]);
        expect(relDiffL2(logits(parts[i], 0), logits(solo, i))).toBeLessThan(1e-5);
      }
    });

    it('an initial state of the wrong size is refused', async () => {
      await expect(model.infer({ input, batch: IMAGES, z0: new Float32Array(7) })).rejects.toSatisfy((e: unknown) => e instanceof DeqError && e.code === 'DEQ_ERR_INVALID_INPUT');
    });
  });
}
