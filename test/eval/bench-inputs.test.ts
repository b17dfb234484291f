import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { benchWindows, windowTokens } from '../../src/eval/bench-inputs.js';
import { planWindows } from '../../src/pipelines/text-scoring.js';
import { DeqModel } from '../../src/runtime/index.js';

const MODELS = resolve(import.meta.dirname, '..', '..', 'models');

describe('bench compare windows', () => {
  it('windowTokens covers exactly the asked number of full-length windows', () => {
    for (const [context, stride] of [[64, 32], [64, 64], [8, 3], [1, 1]]) {
      for (const windows of [1, 2, 5, 32]) {
        const plan = planWindows(windowTokens(windows, context, stride), context, stride);
        expect(plan).toHaveLength(windows);
        expect(plan.every((w) => w.length === context)).toBe(true);
        // Every token scored once: the scored ranges tile the stream.
        expect(plan.reduce((n, w) => n + w.length - w.scoreFrom, 0)).toBe(windowTokens(windows, context, stride));
      }
    }
  });

  it('reads the Brown test split in the bundle vocabulary for brown-lm-jr, and nothing for an image bundle', async () => {
    const lm = await DeqModel.load(resolve(MODELS, 'brown-lm-jr'));
    const image = await DeqModel.load(resolve(MODELS, 'fashion-mnist-jr'));
    try {
      const w = await benchWindows(lm);
      // provenance.data.test_tokens; the sha256 of the stream was checked on the way.
      expect(w!.ids.length).toBe(171_320);
      expect(w!.layout).toMatchObject({ context: 64, stride: 32, bosId: 1, targetsInput: 'targets', targetOutput: 'target_logprobs' });
      expect(await benchWindows(image)).toBeNull();
    } finally {
      await lm.release();
      await image.release();
    }
  }, 60_000);
});
