import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeqError } from '../../src/errors.js';
import { DeqModel } from '../../src/runtime/deq-model.js';
import { KneserNeyTrigram } from '../../src/eval/kneser-ney.js';
import { TextScoringPipeline, planWindows } from '../../src/pipelines/text-scoring.js';
import { expectClose, rng } from '../helpers/float.js';
import { TINY_IMAGE, TINY_LM } from '../helpers/fixtures.js';

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(DeqError);
    return (err as DeqError).code;
  }
  return 'no error';
}

describe('planWindows', () => {
  it('scores every target exactly once, inside its window, with at least context−stride left context after the first window', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 40 }), (n, context, s) => {
      const stride = Math.min(s, context);
      const seen = new Uint8Array(n);
      const plan = planWindows(n, context, stride);
      for (const [k, w] of plan.entries()) {
        expect(w.start).toBeGreaterThanOrEqual(0);
        expect(w.length).toBeLessThanOrEqual(context);
        expect(w.start + w.length).toBeLessThanOrEqual(n);
        for (let t = w.scoreFrom; t < w.length; t++) seen[w.start + t]++;
        if (k > 0) expect(w.scoreFrom).toBeGreaterThanOrEqual(context - stride);
      }
      expect(Array.from(seen).every((c) => c === 1)).toBe(true);
    }));
  });

  it('uses ceil((n − context) / stride) + 1 windows', () => {
    expect(planWindows(100, 16, 8).length).toBe(Math.ceil((100 - 16) / 8) + 1);
    expect(planWindows(16, 16, 8)).toEqual([{ start: 0, length: 16, scoreFrom: 0 }]);
    expect(planWindows(20, 16, 8)).toEqual([{ start: 0, length: 16, scoreFrom: 0 }, { start: 4, length: 16, scoreFrom: 12 }]);
    expect(() => planWindows(10, 8, 9)).toThrow(RangeError);
  });
});

describe('TextScoringPipeline on the tiny-lm fixture', () => {
  let lm: TextScoringPipeline;
  beforeAll(async () => { lm = await TextScoringPipeline.load(TINY_LM, { maxChars: 200, batch: 3 }); });
  afterAll(async () => { await lm.release(); });

  it('reproduces the parity target log-probabilities of a full window', async () => {
    const c = lm.model.bundle.parity!.cases[0];
    const targets = Int32Array.from(c.extra_inputs!.targets.data);
    expect(c.input.data[0]).toBe(lm.tokenizer.bosId); // the recipe's window: [bos, t0 … t_{L-2}]
    expect(Array.from(targets.subarray(0, -1))).toEqual(c.input.data.slice(1));
    const s = await lm.scoreIds(targets, { solver: { tol: 1e-5, maxIter: 100 } });
    expectClose(s.logprobs, c.outputs.target_logprobs, 1e-3);
  });

  it('scores a long stream window by window, each token with the window the plan assigns it', async () => {
    const r = rng(3);
    const ids = Int32Array.from({ length: 45 }, () => 3 + Math.floor(r() * 17));
    const s = await lm.scoreIds(ids, { solver: { tol: 1e-6, maxIter: 100 } });
    const plan = planWindows(ids.length, lm.context, lm.stride);
    expect(s.windows).toBe(plan.length);
    for (const w of plan) {
      const window = ids.subarray(w.start, w.start + w.length);
      const alone = await lm.scoreIds(Int32Array.from(window), { solver: { tol: 1e-6, maxIter: 100 } });
      expectClose(s.logprobs.subarray(w.start + w.scoreFrom, w.start + w.length), alone.logprobs.subarray(w.scoreFrom), 1e-4);
    }
  });

  it('scores text: per-token log-probs, unk flags, total and perplexity agree', async () => {
    const res = await lm.score('The man said it was in the house. He said that, for the dog!');
    expect(res.tokens.map((t) => t.token)).toEqual(['The', 'man', 'said', 'it', 'was', 'in', 'the', 'house', '.', '</s>',
      'He', 'said', 'that', ',', 'for', 'the', 'dog', '!', '</s>']);
    expect(res.tokens.filter((t) => t.unk).map((t) => t.token)).toEqual(['The', 'man', 'house', 'He', 'dog', '!']);
    expect(res.unkCount).toBe(6);
    const total = res.tokens.reduce((a, t) => a + t.logprob, 0);
    expect(res.totalLogprob).toBeCloseTo(total, 9);
    expect(res.perplexity).toBeCloseTo(Math.exp(-total / res.tokens.length), 6);
    for (const t of res.tokens) expect(t.logprob).toBeLessThanOrEqual(0);
    expect(res.windows).toBe(planWindows(19, 16, 8).length);
    expect(res.solver.rows).toBe(res.windows);
    expect(res.solver.meanIterations).toBeGreaterThan(0);
    expect(res.stride).toBe(8);
  });

  it('accepts UTF-8 bytes and gives the same scores as the string', async () => {
    const text = 'It was the said of the “he”.';
    const a = await lm.score(text);
    const b = await lm.score(new TextEncoder().encode(text));
    expect(b.totalLogprob).toBe(a.totalLogprob);
  });

  it('rejects empty text, invalid UTF-8, lone surrogates and over-long text with catalogue codes', async () => {
    expect(await codeOf(lm.score(''))).toBe('DEQ_ERR_TEXT_INVALID');
    expect(await codeOf(lm.score(' \n\t '))).toBe('DEQ_ERR_TEXT_INVALID');
    expect(await codeOf(lm.score(new Uint8Array([0x74, 0x68, 0xff, 0x65])))).toBe('DEQ_ERR_TEXT_INVALID');
    expect(await codeOf(lm.score(new Uint8Array([0xe2, 0x82])))).toBe('DEQ_ERR_TEXT_INVALID');
    expect(await codeOf(lm.score('the \uD800 of'))).toBe('DEQ_ERR_TEXT_INVALID');
    expect(await codeOf(lm.score('the '.repeat(51)))).toBe('DEQ_ERR_TEXT_TOO_LONG');
    expect(await codeOf(lm.score(new Uint8Array(801).fill(0x61)))).toBe('DEQ_ERR_TEXT_TOO_LONG');
    expect(await codeOf(lm.score(42 as unknown as string))).toBe('DEQ_ERR_TEXT_INVALID');
  });

  it('never returns NaN on arbitrary text', async () => {
    await fc.assert(fc.asyncProperty(fc.string({ minLength: 1, maxLength: 150 }), async (text) => {
      try {
        const r = await lm.score(text);
        expect(Number.isFinite(r.perplexity)).toBe(true);
        for (const t of r.tokens) expect(Number.isFinite(t.logprob)).toBe(true);
      } catch (err) {
        expect(err).toBeInstanceOf(DeqError);
        expect(['DEQ_ERR_TEXT_INVALID', 'DEQ_ERR_TEXT_TOO_LONG']).toContain((err as DeqError).code);
      }
    }), { numRuns: 40 });
  });

  it('can insist on convergence', async () => {
    const strict = new TextScoringPipeline(lm.model, { requireConvergence: true });
    expect(await codeOf(strict.score('the of and', { solver: { tol: 1e-12, maxIter: 2 } }))).toBe('DEQ_ERR_NOT_CONVERGED');
  });

  it('refuses a bundle that is not a language model', async () => {
    const image = await DeqModel.load(TINY_IMAGE);
    try {
      expect(() => new TextScoringPipeline(image)).toThrow(expect.objectContaining({ code: 'DEQ_ERR_WRONG_TASK' }));
    } finally {
      await image.release();
    }
  });
});

describe('KneserNeyTrigram', () => {
  const r = rng(11);
  const V = 30;
  // a skewed random stream, so many trigrams are seen once or twice and some never
  const train = Int32Array.from({ length: 3000 }, () => Math.floor(V * r() ** 2));
  const kn = new KneserNeyTrigram(train, V, 1);

  it('sums to 1 over the vocabulary for seen, unseen and bos contexts', () => {
    const contexts: [number, number][] = [[train[10], train[11]], [1, 1], [1, train[0]], [V - 1, V - 1], [0, 29], [5, 5]];
    for (const [u, v] of contexts) {
      let sum = 0;
      for (let w = 0; w < V; w++) {
        const p = kn.prob(u, v, w);
        expect(p).toBeGreaterThan(0);
        sum += p;
      }
      expect(sum).toBeCloseTo(1, 12);
    }
  });

  it('uses discounts in (0, 1) and keeps at least the discounted count of a seen trigram', () => {
    for (const d of kn.discounts) { expect(d).toBeGreaterThan(0); expect(d).toBeLessThan(1); }
    for (const i of [100, 500, 2000]) {
      const [u, v, w] = [train[i - 2], train[i - 1], train[i]];
      let cuv = 0, cuvw = 0;
      for (let j = 2; j < train.length; j++) {
        if (train[j - 2] === u && train[j - 1] === v) { cuv++; if (train[j] === w) cuvw++; }
      }
      expect(kn.prob(u, v, w)).toBeGreaterThanOrEqual((cuvw - kn.discounts[2]) / cuv);
    }
    const lp = kn.logProbs(train.subarray(0, 50));
    expect(lp[2]).toBeCloseTo(Math.log(kn.prob(train[0], train[1], train[2])), 12);
    expect(lp[0]).toBeCloseTo(Math.log(kn.prob(1, 1, train[0])), 12);
  });

  it('gives a lower perplexity on its training data than on a shuffled stream', () => {
    const ppl = (s: Int32Array) => Math.exp(-kn.logProbs(s).reduce((a, b) => a + b, 0) / s.length);
    const shuffled = Int32Array.from(train);
    for (let i = shuffled.length - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]]; }
    expect(ppl(train)).toBeLessThan(ppl(shuffled));
  });

  it('rejects ids outside the vocabulary', () => {
    expect(() => new KneserNeyTrigram(Int32Array.from([1, 2, 40]), V, 1)).toThrow(RangeError);
  });
});

describe('Brown evaluation and score command (src/cli/lm-eval.ts)', () => {
  it('scoreCommand prints per-token log-probs, the total and the perplexity', async () => {
    const { scoreCommand } = await import('../../src/cli/score.js');
    const { score, output } = await scoreCommand(TINY_LM, 'the man said it.');
    expect(score.tokens.map((t) => t.token)).toEqual(['the', 'man', 'said', 'it', '.', '</s>']);
    expect(output).toMatch(/^token\s+logprob\n/);
    expect(output).toContain(`perplexity ${score.perplexity.toFixed(2)}`);
    expect(output).toMatch(/man\s+-\d+\.\d{4}\s+<unk>/);
    const json = await scoreCommand(TINY_LM, new TextEncoder().encode('the man said it.'), { json: true });
    expect(JSON.parse(json.output).totalLogprob).toBeCloseTo(score.totalLogprob, 6);
    expect(await codeOf(scoreCommand(TINY_LM, ''))).toBe('DEQ_ERR_TEXT_INVALID');
  });

  it('evalBrown refuses a bundle whose vocabulary is not the Brown train vocabulary', async () => {
    const { evalBrown } = await import('../../src/eval/brown-eval.js');
    expect(await codeOf(evalBrown(TINY_LM, { limit: 100 }))).toBe('DEQ_ERR_INVALID_INPUT');
  }, 60_000);
});
