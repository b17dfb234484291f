import { TextScoringPipeline, type TextScore } from '../pipelines/text-scoring.js';
import type { SessionConfig } from '../runtime/index.js';
import type { SolverOptions } from '../solver/index.js';

export interface ScoreCommandOptions {
  solver?: Partial<SolverOptions>;
  session?: Partial<SessionConfig>;
  maxChars?: number;
  json?: boolean;
}

/**
 * `deq-serve score <bundle> --text "..."`: scores one text and returns the result
 * with its printable form (a per-token table with the total and the perplexity, or JSON).
 */
export async function scoreCommand(bundleDir: string, text: string | Uint8Array, opts: ScoreCommandOptions = {}): Promise<{ score: TextScore; output: string }> {
  const lm = await TextScoringPipeline.load(bundleDir, opts.maxChars ? { maxChars: opts.maxChars } : {}, opts.session);
  try {
    const score = await lm.score(text, { solver: opts.solver });
    return { score, output: opts.json ? JSON.stringify(score, null, 2) + '\n' : formatScore(score) };
  } finally {
    await lm.release();
  }
}

/** A plain-text table of a TextScore. */
export function formatScore(s: TextScore): string {
  const width = Math.max(5, ...s.tokens.map((t) => t.token.length));
  const lines = s.tokens.map((t) => `${t.token.padEnd(width)}  ${t.logprob.toFixed(4).padStart(9)}${t.unk ? '  <unk>' : ''}`);
  const w = s.solver;
  return [
    `${'token'.padEnd(width)}  ${'logprob'.padStart(9)}`,
    ...lines,
    '',
    `tokens ${s.tokens.length} (${s.unkCount} unknown)  total logprob ${s.totalLogprob.toFixed(4)}  perplexity ${s.perplexity.toFixed(2)}`,
    `solver: ${s.options.method}, ${s.windows} window(s) of ≤${s.context} (stride ${s.stride}), NFE mean ${w.meanIterations.toFixed(1)} max ${w.maxIterations}, ` +
      `${w.rows - w.converged} not converged (${w.diverged} diverged); ${s.timing.msPerToken.toFixed(2)} ms/token`,
    '',
  ].join('\n');
}
