// #9: a sample's answer must not depend on its company. Batches whose samples stop
// at different iterations (own tolerances and caps) compact the finished rows out
// of the cell run several times; every row must still match its solo run.
import { resolve } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFashionMnist, type ImageSet } from '../../src/eval/fashion-mnist.js';
import { normalizePixels } from '../../src/preprocess/normalize.js';
import { DeqModel, type InferResult, type TensorValue } from '../../src/runtime/index.js';
import { SOLVER_METHODS, type SolverMethod } from '../../src/solver/index.js';
import { FASHION_MNIST_SLICE, TINY_IMAGE } from '../helpers/fixtures.js';
import { relDiffL2 } from '../helpers/float.js';

const TOLS = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5];

interface Row { input: Float32Array; tol: number; maxIter: number }


function rowOf(t: TensorValue, i: number, per: number): Float32Array {
  return Float32Array.from((t.data as Float32Array).subarray(i * per, (i + 1) * per));
}

async function checkBatch(model: DeqModel, method: SolverMethod, rows: Row[]): Promise<{ distinctStops: number }> {
  const per = rows[0].input.length;
  const input = new Float32Array(per * rows.length);
  rows.forEach((r, i) => input.set(r.input, i * per));
  const together = await model.infer({
    input, batch: rows.length, returnState: true,
    solver: { method, sampleTol: rows.map((r) => r.tol), sampleMaxIter: rows.map((r) => r.maxIter) },
  });
  const n = together.state!.data.length / rows.length;
  const logitsName = Object.keys(together.outputs)[0];
  const classes = together.outputs[logitsName].data.length / rows.length;
  for (const [i, r] of rows.entries()) {
    const alone: InferResult = await model.infer({ input: r.input, batch: 1, returnState: true, solver: { method, tol: r.tol, maxIter: r.maxIter } });
    const where = `row ${i} of ${rows.length} (${method}, tol ${r.tol}, cap ${r.maxIter})`;
    expect(together.solver.iterations[i], `${where}: iterations`).toBe(alone.solver.iterations[0]);
    expect(together.solver.converged[i], `${where}: converged`).toBe(alone.solver.converged[0]);
    expect(relDiffL2(rowOf(together.state!, i, n), alone.state!.data as Float32Array), `${where}: z*`).toBeLessThanOrEqual(1e-5);
    expect(relDiffL2(rowOf(together.outputs[logitsName], i, classes), alone.outputs[logitsName].data as Float32Array), `${where}: logits`).toBeLessThanOrEqual(1e-5);
  }
  return { distinctStops: new Set(together.solver.iterations).size };
}

describe('batch invariance of DeqModel (property)', () => {
  describe('tiny-image fixture', () => {
    let model: DeqModel;
    beforeAll(async () => { model = await DeqModel.load(TINY_IMAGE); });
    afterAll(async () => { await model.release(); });

    it('each sample of a random batch matches its solo run: z* and logits within 1e-5 relative, iterations exact', async () => {
      let multiStop = 0;
      const row = fc.record({
        input: fc.array(fc.float({ min: -2, max: 2, noNaN: true, noDefaultInfinity: true }), { minLength: 64, maxLength: 64 }).map((a) => Float32Array.from(a)),
        tol: fc.constantFrom(...TOLS),
        maxIter: fc.integer({ min: 1, max: 40 }),
      });
      await fc.assert(fc.asyncProperty(fc.constantFrom(...SOLVER_METHODS), fc.array(row, { minLength: 2, maxLength: 6 }), async (method, rows) => {
        const { distinctStops } = await checkBatch(model, method, rows);
        if (distinctStops >= 3) multiStop++;
      }), { numRuns: 40, seed: 9 });
      // The property is only worth something if the active set changed more than once in many batches.
      expect(multiStop).toBeGreaterThanOrEqual(10);
    }, 120_000);
  });

  describe('shipped fashion-mnist-jr on real test images', () => {
    let model: DeqModel;
    let set: ImageSet;
    beforeAll(async () => {
      model = await DeqModel.load(resolve(import.meta.dirname, '..', '..', 'models', 'fashion-mnist-jr'));
      set = await readFashionMnist('test', FASHION_MNIST_SLICE);
    });
    afterAll(async () => { await model.release(); });

    it('each image of a random batch matches its solo run', async () => {
      const p = model.manifest.preprocess!;
      const image = (k: number) => {
        const out = new Float32Array(784);
        normalizePixels(set.images.subarray(k * 784, (k + 1) * 784), p, out);
        return out;
      };
      const row = fc.record({ k: fc.integer({ min: 0, max: set.count - 1 }), tol: fc.constantFrom(...TOLS), maxIter: fc.integer({ min: 1, max: 12 }) });
      await fc.assert(fc.asyncProperty(fc.constantFrom<SolverMethod>('broyden', 'anderson'), fc.array(row, { minLength: 2, maxLength: 5 }), async (method, rows) => {
        await checkBatch(model, method, rows.map((r) => ({ input: image(r.k), tol: r.tol, maxIter: r.maxIter })));
      }), { numRuns: 12, seed: 9 });
    }, 120_000);
  });
});
