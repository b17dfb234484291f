// The shipped Brown-corpus language model through the TypeScript runtime.
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brownCorpusDir, encodeStream, readBrownSplits } from '../../src/eval/brown-corpus.js';
import { evalBrown } from '../../src/eval/brown-eval.js';
import { checkParity } from '../../src/runtime/index.js';
import { TextScoringPipeline, planWindows } from '../../src/pipelines/text-scoring.js';
import { DeqError } from '../../src/errors.js';

const BUNDLE = resolve(import.meta.dirname, '..', '..', 'models', 'brown-lm-jr');

describe('shipped brown-lm-jr', () => {
  let lm: TextScoringPipeline;
  beforeAll(async () => { lm = await TextScoringPipeline.load(BUNDLE); });
  afterAll(async () => { await lm.release(); });

  it('passes parity against its PyTorch reference', async () => {
    const report = await checkParity(lm.model);
    expect(report.cases.length).toBe(3);
    expect(report.passed).toBe(true);
  });

  it('scores free text per token, Brown-tokenized, with finite log-probabilities', async () => {
    const s = await lm.score('"Don\'t panic," she said.');
    expect(s.tokens.map((t) => t.token)).toEqual(['``', "Don't", 'panic', "''", ',', 'she', 'said', '.', '</s>']);
    for (const t of s.tokens) {
      expect(Number.isFinite(t.logprob)).toBe(true);
      expect(t.logprob).toBeLessThan(0);
    }
    expect(s.perplexity).toBeCloseTo(Math.exp(-s.totalLogprob / s.tokens.length), 6);
    expect(s.unkCount).toBe(0);
    expect(s.solver.converged).toBe(s.solver.rows);
    expect(s.perplexity).toBeLessThan(14_116); // better than uniform
  });

  it('predicts held-out Brown text far better than a uniform guess over the vocabulary', async () => {
    const splits = await readBrownSplits(brownCorpusDir(), lm.tokenizer.spec.eos);
    const ids = encodeStream(splits.test.slice(0, 2000), lm.tokenizer.vocab, lm.tokenizer.unkId);
    const s = await lm.scoreIds(ids);
    const ppl = Math.exp(-s.logprobs.reduce((a, b) => a + b, 0) / ids.length);
    // Uniform over |V| ≈ 14k; the shipped model measures 127.6 on the whole test split (docs/results/brown.md).
    expect(ppl).toBeLessThan(1000);
  }, 120_000);

  it('evaluates a prefix of the Brown split next to Kneser-Ney', async () => {
    const r = await evalBrown(BUNDLE, { limit: 600 });
    expect(r.vocabSize).toBe(14_116);
    for (const d of r.deq) {
      expect(d.tokens).toBe(600);
      expect(d.windows).toBe(planWindows(600, 64, 32).length);
      expect(Number.isFinite(d.perplexity)).toBe(true);
      expect(d.perplexity).toBeLessThan(2000);
    }
    for (const k of r.kneserNey) expect(k.perplexity).toBeLessThan(1000);
  }, 180_000);

  it('refuses empty, invalid and overlong text with catalogue codes', async () => {
    const codeOf = (p: Promise<unknown>) => p.then(() => 'none', (e: DeqError) => e.code);
    expect(await codeOf(lm.score('   '))).toBe('DEQ_ERR_TEXT_INVALID');
    expect(await codeOf(lm.score(Uint8Array.of(0xff, 0xfe, 0x41)))).toBe('DEQ_ERR_TEXT_INVALID');
    expect(await codeOf(lm.score('x'.repeat(lm.config.maxChars + 1)))).toBe('DEQ_ERR_TEXT_TOO_LONG');
  });
});
