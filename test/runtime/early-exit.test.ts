// Issue 23: early exit on a stable prediction on the shipped fashion-mnist-plain (the model
// it helps most), in every batching mode: a sample's stop, answer and label trace do not
// depend on its company (DeqModel.infer batches, continuous and static scheduling).
import { resolve } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeqError } from '../../src/errors.js';
import { readFashionMnist } from '../../src/eval/fashion-mnist.js';
import { normalizePixels } from '../../src/preprocess/normalize.js';
import { argmax, DeqModel, Scheduler, type ExecutorResult, type InferResult } from '../../src/runtime/index.js';
import { RowEnd, type SolverOptions } from '../../src/solver/index.js';
import { softmaxMargin } from '../../src/runtime/iterate-labels.js';
import { FASHION_MNIST_SLICE, TINY_IMAGE, TINY_LM } from '../helpers/fixtures.js';
import { relDiffL2 } from '../helpers/float.js';

const IMAGES = 12;
const EARLY: Partial<SolverOptions> = { patience: 3, predictionTol: 0.1, predictionMargin: 0.8 };

describe('early exit on fashion-mnist-plain', () => {
  let model: DeqModel;
  const images: Float32Array[] = [];
  const solo: InferResult[] = [];

  beforeAll(async () => {
    model = await DeqModel.load(resolve(import.meta.dirname, '..', '..', 'models', 'fashion-mnist-plain'));
    const set = await readFashionMnist('test', FASHION_MNIST_SLICE);
    for (let k = 0; k < IMAGES; k++) {
      const x = new Float32Array(784);
      normalizePixels(set.images.subarray(k * 784, (k + 1) * 784), model.manifest.preprocess!, x);
      images.push(x);
      solo.push(await model.infer({ input: x, batch: 1, returnState: true, solver: { ...EARLY, trace: true } }));
    }
  }, 120_000);
  afterAll(async () => { await model.release(); });

  const logits = (r: InferResult, i: number) => (r.outputs.logits.data as Float32Array).subarray(i * 10, (i + 1) * 10);

  it('stops early, on a label that held for patience iterations, and answers with that label', async () => {
    let early = 0, saved = 0;
    for (const [i, r] of solo.entries()) {
      const full = await model.infer({ input: images[i], batch: 1 });
      const labels = Array.from(r.solver.traceLabels![0]);
      const it = r.solver.iterations[0];
      expect(labels).toHaveLength(it);
      expect(r.solver.trace![0]).toHaveLength(it);
      if (r.solver.end[0] !== RowEnd.Predicted) continue;
      early++;
      saved += full.solver.iterations[0] - it;
      // The last patience + 1 labels agree, and the answer is that label.
      const last = labels.slice(-4);
      expect(new Set(last).size).toBe(1);
      expect(argmax(logits(r, 0))).toBe(last[0]);
      expect(r.solver.trace![0][it - 1]).toBeLessThan(0.1);
      expect(r.solver.residual[0]).toBe(r.solver.trace![0][it - 1]);
    }
    expect(early).toBeGreaterThanOrEqual(IMAGES / 2);
    expect(saved).toBeGreaterThan(0);
  });

  it('a batch gives every image its solo stop, answer and label trace', async () => {
    const input = new Float32Array(784 * IMAGES);
    images.forEach((x, i) => input.set(x, i * 784));
    const together = await model.infer({ input, batch: IMAGES, returnState: true, solver: { ...EARLY, trace: true } });
    expect(new Set(together.solver.iterations).size).toBeGreaterThanOrEqual(2); // rows leave at different iterations
    for (let i = 0; i < IMAGES; i++) {
      expect(together.solver.iterations[i], `image ${i}`).toBe(solo[i].solver.iterations[0]);
      expect(together.solver.end[i]).toBe(solo[i].solver.end[0]);
      expect(Array.from(together.solver.traceLabels![i])).toEqual(Array.from(solo[i].solver.traceLabels![0]));
      expect(relDiffL2(logits(together, i), logits(solo[i], 0))).toBeLessThanOrEqual(1e-5);
    }
  });

  for (const mode of ['continuous', 'static'] as const) {
    it(`${mode} batching: each request gets its solo stop and answer, next to requests without early exit`, async () => {
      const sched = new Scheduler(model, { mode, maxRows: 8, maxQueueDelayMs: 5 });
      const results: Promise<ExecutorResult>[] = images.map((x, i) => sched.submit({ input: x, batch: 1, solver: i % 4 === 3 ? {} : { ...EARLY, trace: true } }).result);
      const done = await Promise.all(results);
      for (const [i, r] of done.entries()) {
        if (i % 4 === 3) {
          expect(r.solver.end[0]).not.toBe(RowEnd.Predicted);
          continue;
        }
        expect(r.solver.iterations[0], `image ${i}`).toBe(solo[i].solver.iterations[0]);
        expect(r.solver.end[0]).toBe(solo[i].solver.end[0]);
        expect(Array.from(r.solver.traceLabels![0])).toEqual(Array.from(solo[i].solver.traceLabels![0]));
        expect(relDiffL2(logits(r, 0), logits(solo[i], 0))).toBeLessThanOrEqual(1e-5);
      }
    }, 60_000);
  }

  it('a model without a classifier head refuses stop_mode "prediction"', async () => {
    const lm = await DeqModel.load(TINY_LM);
    try {
      const ids = new BigInt64Array(4).fill(1n);
      await expect(lm.infer({ input: ids, batch: 1, length: 4, headInputs: { targets: ids }, solver: { patience: 2 } })).rejects.toSatisfy((e: unknown) => e instanceof DeqError && e.code === 'DEQ_ERR_INVALID_SOLVER_OPTION');
    } finally {
      await lm.release();
    }
  });
});

describe('batched equals solo with early exit, traces and warm starts on (property, tiny-image)', () => {
  let model: DeqModel;
  beforeAll(async () => { model = await DeqModel.load(TINY_IMAGE); });
  afterAll(async () => { await model.release(); });

  it('each request scheduled with others (continuous and static) gets its solo iterations, stop reason, label trace and logits', async () => {
    const request = fc.record({
      input: fc.array(fc.float({ min: -2, max: 2, noNaN: true, noDefaultInfinity: true }), { minLength: 64, maxLength: 64 }).map((a) => Float32Array.from(a)),
      z0: fc.option(fc.array(fc.float({ min: -1, max: 1, noNaN: true, noDefaultInfinity: true }), { minLength: 64, maxLength: 64 }).map((a) => Float32Array.from(a)), { nil: undefined }),
      solver: fc.record({
        tol: fc.constantFrom(1e-2, 1e-3, 1e-4, 1e-5),
        maxIter: fc.integer({ min: 2, max: 30 }),
        patience: fc.integer({ min: 0, max: 4 }),
        predictionTol: fc.constantFrom(0.01, 0.1, 1),
        predictionMargin: fc.constantFrom(0, 0.3, 0.8),
        trace: fc.boolean(),
      }),
    });
    let early = 0;
    await fc.assert(fc.asyncProperty(fc.constantFrom('continuous' as const, 'static' as const), fc.array(request, { minLength: 2, maxLength: 6 }), async (mode, reqs) => {
      const sched = new Scheduler(model, { mode, maxRows: 4, maxQueueDelayMs: 1 });
      const together = await Promise.all(reqs.map((r) => sched.submit({ input: r.input, batch: 1, z0: r.z0, solver: r.solver }).result));
      for (const [i, r] of reqs.entries()) {
        const alone = await model.infer({ input: r.input, batch: 1, z0: r.z0, solver: r.solver });
        expect(together[i].solver.iterations[0]).toBe(alone.solver.iterations[0]);
        expect(together[i].solver.end[0]).toBe(alone.solver.end[0]);
        if (r.solver.trace) expect(Array.from(together[i].solver.traceLabels![0])).toEqual(Array.from(alone.solver.traceLabels![0]));
        expect(relDiffL2(together[i].outputs.logits.data as Float32Array, alone.outputs.logits.data as Float32Array)).toBeLessThanOrEqual(1e-5);
        if (alone.solver.end[0] === RowEnd.Predicted) early++;
      }
    }), { numRuns: 30, seed: 23 });
    expect(early).toBeGreaterThanOrEqual(5); // the property covered early exits
  }, 120_000);
});

describe('softmaxMargin', () => {
  it('is the top-1 softmax probability minus the runner-up\'s, in float64', () => {
    const l = Float32Array.of(9, 2, 1, 0, 9);
    const e = [Math.exp(2), Math.exp(1), 1];
    expect(softmaxMargin(l, 1, 3)).toBeCloseTo((e[0] - e[1]) / (e[0] + e[1] + e[2]), 12);
    expect(softmaxMargin(Float32Array.of(1, 1), 0, 2)).toBe(0);
    expect(softmaxMargin(Float32Array.of(0, 1000), 0, 2)).toBeCloseTo(1, 12);
  });
});
