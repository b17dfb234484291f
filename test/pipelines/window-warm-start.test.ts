// Issue 23: /score windows warm-start from the previous window's fixed point on the positions
// they share. The layout of the initial state is checked against a recording runner, and the
// scores against cold solves on the tiny-lm fixture.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planWindows, scoreStream, TextScoringPipeline, type WindowResult, type WindowScoring } from '../../src/pipelines/text-scoring.js';
import type { InferRequest } from '../../src/runtime/index.js';
import { TINY_LM } from '../helpers/fixtures.js';

const SPEC: WindowScoring = { context: 8, stride: 3, batch: 4, bosId: 0, vocabSize: 50, targetsInput: 'targets', targetOutput: 'lp', requireConvergence: false, positionWidth: 2 };

describe('scoreStream with warmStart', () => {
  it('solves one window at a time; window k starts from window k−1\'s z* shifted by their start difference, position 0 and the new tail zero', async () => {
    const seen: InferRequest[] = [];
    // z* of a window: position p, channel c holds 1000·window + 10·p + c (so every copy is traceable).
    const run = async (req: InferRequest): Promise<WindowResult> => {
      const k = seen.length;
      seen.push(req);
      const L = req.length!, b = req.batch;
      const state = Float32Array.from({ length: b * L * 2 }, (_, i) => 1000 * k + 10 * Math.floor((i % (L * 2)) / 2) + (i % 2));
      return {
        outputs: { lp: { data: new Float32Array(b * L).fill(-1) } }, state: { data: state },
        solver: { iterations: new Int32Array(b).fill(3), residual: new Float64Array(b), converged: new Uint8Array(b).fill(1), diverged: new Uint8Array(b), stopped: false },
        options: { method: 'broyden', tol: 1e-3, stopMode: 'rel', maxIter: 30 },
      };
    };
    const ids = Int32Array.from({ length: 20 }, (_, i) => 1 + (i % 40));
    const plan = planWindows(ids.length, 8, 3);
    const res = await scoreStream(ids, SPEC, run, undefined, { warmStart: true });
    expect(res.windows).toBe(plan.length);
    expect(seen).toHaveLength(plan.length);
    expect(seen.every((r) => r.batch === 1 && r.returnState === true)).toBe(true);
    expect(seen[0].z0).toBeUndefined();
    for (let k = 1; k < plan.length; k++) {
      const shift = plan[k].start - plan[k - 1].start;
      const z0 = seen[k].z0!;
      for (let p = 0; p < 8; p++) {
        for (let c = 0; c < 2; c++) {
          const want = p >= 1 && p + shift < 8 ? 1000 * (k - 1) + 10 * (p + shift) + c : 0;
          expect(z0[p * 2 + c], `window ${k} position ${p}`).toBe(want);
        }
      }
    }
    const cold: InferRequest[] = [];
    await scoreStream(ids, SPEC, async (req) => { cold.push(req); return run(req); });
    expect(cold.some((r) => r.batch > 1)).toBe(true);
    expect(cold.every((r) => r.z0 === undefined)).toBe(true);
  });
});

describe('window warm starts on tiny-lm', () => {
  let lm: TextScoringPipeline;
  beforeAll(async () => { lm = await TextScoringPipeline.load(TINY_LM, { batch: 2 }); });
  afterAll(async () => { await lm.release(); });

  // Whether it saves evaluations depends on the model (on this random fixture it does not; on
  // brown-lm-jr it does: docs/solver.md). What must hold everywhere is the answer.
  it('scores every token as the cold solve does, within the solver tolerance', async () => {
    const ids = Int32Array.from({ length: 90 }, (_, i) => 3 + ((i * 7) % 15));
    const cold = await lm.scoreIds(ids, { solver: { tol: 1e-5, maxIter: 100 } });
    const warm = await lm.scoreIds(ids, { solver: { tol: 1e-5, maxIter: 100 }, warmStart: true });
    expect(warm.windows).toBe(cold.windows);
    for (let i = 0; i < ids.length; i++) expect(Math.abs(warm.logprobs[i] - cold.logprobs[i])).toBeLessThan(1e-3);
    expect(Array.from(warm.solver.converged)).toEqual(new Array(warm.windows).fill(1));
  });

  it('a model whose state has no sequence axis cannot warm-start windows', async () => {
    const spec = { ...SPEC, positionWidth: 0 };
    await expect(scoreStream(Int32Array.of(1, 2, 3), spec, async () => { throw new Error('not reached'); }, undefined, { warmStart: true })).rejects.toThrow(/sequence axis/);
  });
});
