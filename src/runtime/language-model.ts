import { DeqError } from '../errors.js';
import { BrownTokenizer } from '../preprocess/tokenizer.js';
import type { SolverOptions } from '../solver/index.js';
import { DeqModel, type InferRequest } from './deq-model.js';
import type { Manifest } from './manifest.js';
import type { SessionConfig } from './onnx.js';

export interface LanguageModelConfig {
  /** Longest accepted text, in UTF-16 code units (bytes/4 is checked before decoding a buffer). */
  maxChars: number;
  /** Windows per inference call. */
  batch: number;
  /** Sliding-window stride in tokens; defaults to the manifest's `tokenizer.stride`, else context/2. */
  stride?: number;
  /** Throw DEQ_ERR_NOT_CONVERGED when a window's solve stops above tolerance (default: report it). */
  requireConvergence: boolean;
}

export const LM_DEFAULTS: Readonly<LanguageModelConfig> = Object.freeze({ maxChars: 20_000, batch: 16, requireConvergence: false });

/** One window: model input positions [start, start+length), targets scored from offset scoreFrom on. */
export interface WindowPlan {
  start: number;
  length: number;
  scoreFrom: number;
}

/**
 * Sliding windows over n targets with at most `context` positions each. The first
 * window scores all of its targets; each next one starts `stride` later (the last
 * one is aligned to end at n) and scores only the targets after the previous
 * window's end, so every target is scored exactly once, with between
 * context−stride and context−1 tokens of left context (fewer only near the start).
 * Mirrors windows_plan() in models/recipes/train_brown_lm.py.
 */
export function planWindows(n: number, context: number, stride: number): WindowPlan[] {
  if (!(Number.isInteger(context) && context >= 1 && Number.isInteger(stride) && stride >= 1 && stride <= context)) {
    throw new RangeError(`need 1 ≤ stride ≤ context (got stride ${stride}, context ${context})`);
  }
  if (n <= context) return n > 0 ? [{ start: 0, length: n, scoreFrom: 0 }] : [];
  const plan: WindowPlan[] = [{ start: 0, length: context, scoreFrom: 0 }];
  let start = 0, end = context;
  while (end < n) {
    start = Math.min(start + stride, n - context);
    plan.push({ start, length: context, scoreFrom: end - start });
    end = start + context;
  }
  return plan;
}

/** Natural-log probabilities of a token-id stream, with the solver's per-window outcome. */
export interface StreamScores {
  logprobs: Float64Array;
  windows: number;
  /** Per window: f evaluations, residual of the iterate used, converged and diverged flags. */
  iterations: Int32Array;
  residuals: Float64Array;
  converged: Uint8Array;
  /**
   * The solve blew up after its best iterate; scores come from that best (finite)
   * iterate, like a non-converged window. Non-finite scores are an error instead.
   */
  diverged: Uint8Array;
  /** Wall time of the inference calls. */
  ms: number;
}

export interface TokenScore {
  token: string;
  id: number;
  /** Natural log of p(token | left context). */
  logprob: number;
  /** The token is not in the vocabulary; it was scored as `<unk>`. */
  unk: boolean;
}

export interface SolverSummary {
  windows: number;
  meanIterations: number;
  maxIterations: number;
  maxResidual: number;
  notConverged: number;
  /** Windows whose solve blew up after its best iterate (scored from that iterate). */
  diverged: number;
}

export interface TextScore {
  tokens: TokenScore[];
  /** Σ logprob over every token, `</s>` and `<unk>` included (natural log). */
  totalLogprob: number;
  /** exp(−totalLogprob / tokens). */
  perplexity: number;
  unkCount: number;
  context: number;
  stride: number;
  solver: SolverSummary;
  timing: { totalMs: number; msPerToken: number };
}

export interface ScoreOptions {
  solver?: Partial<SolverOptions>;
}

// Lone surrogates cannot be encoded as UTF-8; a JS string can still hold them.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Scores texts with a DEQ language-model bundle: Brown tokenization, then each
 * window [bos, t₀ … t_{L−2}] → log p(t₀ … t_{L−1}) through DeqModel, fetching only
 * the head's `target_logprobs` output (never the B×T×|V| table).
 */
export class LanguageModel {
  readonly model: DeqModel;
  readonly tokenizer: BrownTokenizer;
  readonly context: number;
  readonly stride: number;
  readonly config: Readonly<LanguageModelConfig>;
  readonly #windows: WindowScoring;

  constructor(model: DeqModel, config: Partial<LanguageModelConfig> = {}) {
    const m = model.manifest;
    const tok = m.tokenizer;
    if (m.task !== 'language-model' || !tok || !model.bundle.vocab) {
      throw new DeqError('DEQ_ERR_WRONG_TASK', `${m.name} is not a language model with a tokenizer`);
    }
    const cfg = { ...LM_DEFAULTS, ...config };
    if (!(Number.isInteger(cfg.maxChars) && cfg.maxChars > 0)) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `maxChars must be a positive integer (got ${cfg.maxChars})`);
    this.model = model;
    this.tokenizer = new BrownTokenizer(model.bundle.vocab, tok);
    this.#windows = windowScoringOf(m, model.bundle.vocab, cfg);
    this.context = this.#windows.context;
    this.stride = this.#windows.stride;
    this.config = Object.freeze(cfg);
  }

  static async load(dir: string, config: Partial<LanguageModelConfig> = {}, session: Partial<SessionConfig> = {}): Promise<LanguageModel> {
    const model = await DeqModel.load(dir, session);
    try {
      return new LanguageModel(model, config);
    } catch (err) {
      await model.release();
      throw err;
    }
  }

  /** The text of a request: a string, or UTF-8 bytes decoded strictly. Checks emptiness and the length limit. */
  text(input: string | Uint8Array): string {
    return validateText(input, this.config.maxChars);
  }

  /** Tokenizes and scores one text. */
  async score(input: string | Uint8Array, opts: ScoreOptions = {}): Promise<TextScore> {
    const t0 = performance.now();
    const enc = this.tokenizer.encode(this.text(input));
    if (enc.ids.length === 0) throw new DeqError('DEQ_ERR_TEXT_INVALID', 'text has no tokens');
    const s = await this.scoreIds(enc.ids, opts);
    const tokens: TokenScore[] = new Array(enc.ids.length);
    let total = 0, unkCount = 0;
    for (let i = 0; i < enc.ids.length; i++) {
      tokens[i] = { token: enc.tokens[i], id: enc.ids[i], logprob: s.logprobs[i], unk: enc.unk[i] === 1 };
      total += s.logprobs[i];
      unkCount += enc.unk[i];
    }
    const totalMs = performance.now() - t0;
    return {
      tokens,
      totalLogprob: total,
      perplexity: Math.exp(-total / tokens.length),
      unkCount,
      context: this.context,
      stride: this.stride,
      solver: summarizeSolver(s),
      timing: { totalMs, msPerToken: totalMs / tokens.length },
    };
  }

  /** Scores a stream of ids with sliding windows; every id is scored exactly once. */
  scoreIds(ids: Int32Array, opts: ScoreOptions = {}): Promise<StreamScores> {
    return scoreStream(ids, this.#windows, (req) => this.model.infer(req), opts.solver);
  }

  async release(): Promise<void> {
    await this.model.release();
  }
}

/** Mean/max iterations, worst residual and non-converged count over windows. */
export function summarizeSolver(s: Pick<StreamScores, 'iterations' | 'residuals' | 'converged' | 'diverged'>): SolverSummary {
  const n = s.iterations.length;
  let sum = 0, max = 0, maxRes = 0, bad = 0, div = 0;
  for (let i = 0; i < n; i++) {
    sum += s.iterations[i];
    if (s.iterations[i] > max) max = s.iterations[i];
    if (s.residuals[i] > maxRes) maxRes = s.residuals[i];
    if (!s.converged[i]) bad++;
    div += s.diverged[i];
  }
  return { windows: n, meanIterations: n ? sum / n : 0, maxIterations: max, maxResidual: maxRes, notConverged: bad, diverged: div };
}

/** How a language-model bundle's windows are built and batched. */
export interface WindowScoring {
  context: number;
  stride: number;
  /** Windows per inference call. */
  batch: number;
  bosId: number;
  vocabSize: number;
  /** Head input that takes the target ids, and the head output with their log-probabilities. */
  targetsInput: string;
  targetOutput: string;
  requireConvergence: boolean;
}

/**
 * A language-model bundle's window layout, from its manifest: the tokenizer's context,
 * `stride` (else the manifest's, else context/2), the head's targets input and
 * target_logprobs output, and the vocabulary's bos id. Shared by LanguageModel and
 * the server's /score route, so both score a text the same way.
 */
export function windowScoringOf(
  m: Manifest,
  vocab: readonly string[],
  opts: { batch: number; stride?: number; requireConvergence: boolean },
): WindowScoring {
  const tok = m.tokenizer;
  if (m.task !== 'language-model' || !tok) throw new DeqError('DEQ_ERR_WRONG_TASK', `${m.name} is not a language model with a tokenizer`);
  const targetOutput = m.outputs.target_logprobs;
  const targetsInput = m.graphs.head?.inputs[1]?.name;
  if (!targetOutput || !targetsInput) throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `${m.name}: a language-model head needs a targets input and a target_logprobs output (manifest.outputs)`);
  const bosId = vocab.indexOf(tok.bos);
  if (bosId < 0) throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `${m.name}: vocabulary has no bos symbol "${tok.bos}"`);
  const context = tok.context;
  const stride = opts.stride ?? tok.stride ?? Math.max(1, Math.floor(context / 2));
  if (!(Number.isInteger(opts.batch) && opts.batch > 0)) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `batch must be a positive integer (got ${opts.batch})`);
  if (!(Number.isInteger(stride) && stride >= 1 && stride <= context)) {
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `stride must be an integer in [1, ${context}] (got ${stride})`);
  }
  return { context, stride, batch: opts.batch, bosId, vocabSize: vocab.length, targetsInput, targetOutput, requireConvergence: opts.requireConvergence };
}

/** What scoring needs of an inference result, whether it ran here or on a worker. */
export interface WindowResult {
  outputs: Record<string, { data: Float32Array | BigInt64Array }>;
  solver: { iterations: ArrayLike<number>; residual: ArrayLike<number>; converged: ArrayLike<number>; diverged: ArrayLike<number> };
}

/** Runs one batched inference: DeqModel.infer in-process, or a worker pool's submit in the server. */
export type WindowRunner = (req: InferRequest) => Promise<WindowResult>;

/**
 * Scores a stream of ids with sliding windows (planWindows): each window is
 * [bos, t_start … t_{start+L−2}] → log p(t_start … t_{start+L−1}), only the
 * `targetOutput` head output is fetched, and every id is scored exactly once.
 */
export async function scoreStream(ids: Int32Array, spec: WindowScoring, run: WindowRunner, solver?: Partial<SolverOptions>): Promise<StreamScores> {
  const plan = planWindows(ids.length, spec.context, spec.stride);
  const logprobs = new Float64Array(ids.length);
  const iterations = new Int32Array(plan.length);
  const residuals = new Float64Array(plan.length);
  const converged = new Uint8Array(plan.length);
  const diverged = new Uint8Array(plan.length);
  const bos = BigInt(spec.bosId);
  for (let i = 0; i < ids.length; i++) {
    if (!(ids[i] >= 0 && ids[i] < spec.vocabSize)) throw new DeqError('DEQ_ERR_INVALID_INPUT', `token id ${ids[i]} at ${i} is outside the vocabulary of ${spec.vocabSize}`);
  }
  let ms = 0;
  for (let w0 = 0; w0 < plan.length;) {
    // batch consecutive windows of one length (only a short single window differs)
    const L = plan[w0].length;
    let w1 = w0;
    while (w1 < plan.length && w1 - w0 < spec.batch && plan[w1].length === L) w1++;
    const b = w1 - w0;
    const input = new BigInt64Array(b * L);
    const targets = new BigInt64Array(b * L);
    for (let j = 0; j < b; j++) {
      const { start } = plan[w0 + j];
      input[j * L] = bos;
      for (let t = 0; t < L; t++) {
        targets[j * L + t] = BigInt(ids[start + t]);
        if (t + 1 < L) input[j * L + t + 1] = BigInt(ids[start + t]);
      }
    }
    const t0 = performance.now();
    const res = await run({
      input, batch: b, length: L,
      headInputs: { [spec.targetsInput]: targets },
      outputs: [spec.targetOutput],
      solver,
    });
    ms += performance.now() - t0;
    const lp = res.outputs[spec.targetOutput].data as Float32Array;
    for (let j = 0; j < b; j++) {
      const { start, scoreFrom } = plan[w0 + j];
      const w = w0 + j;
      iterations[w] = res.solver.iterations[j];
      residuals[w] = res.solver.residual[j];
      converged[w] = res.solver.converged[j];
      diverged[w] = res.solver.diverged[j];
      if (spec.requireConvergence && !converged[w]) {
        throw new DeqError('DEQ_ERR_NOT_CONVERGED', `window ${w} stopped at residual ${residuals[w].toExponential(2)} after ${iterations[w]} evaluations`);
      }
      for (let t = scoreFrom; t < L; t++) {
        const v = lp[j * L + t];
        if (!Number.isFinite(v)) throw new DeqError('DEQ_ERR_DIVERGED', `non-finite log-probability at token ${start + t} (window ${w}, tokens ${start}…${start + L - 1})`);
        logprobs[start + t] = v;
      }
    }
    w0 = w1;
  }
  return { logprobs, windows: plan.length, iterations, residuals, converged, diverged, ms };
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * The text of a request: a string, or UTF-8 bytes decoded strictly. Throws
 * DEQ_ERR_TEXT_INVALID (empty, lone surrogate, invalid UTF-8) or DEQ_ERR_TEXT_TOO_LONG.
 */
export function validateText(input: string | Uint8Array, maxChars: number): string {
  let text: string;
  if (typeof input === 'string') {
    text = input;
    if (LONE_SURROGATE.test(text)) throw new DeqError('DEQ_ERR_TEXT_INVALID', 'text contains a lone surrogate (not valid Unicode)');
  } else if (input instanceof Uint8Array) {
    if (input.length > 4 * maxChars) throw new DeqError('DEQ_ERR_TEXT_TOO_LONG', `text is ${input.length} bytes; the limit is ${maxChars} characters`);
    try {
      text = STRICT_UTF8.decode(input);
    } catch {
      throw new DeqError('DEQ_ERR_TEXT_INVALID', 'text is not valid UTF-8');
    }
  } else {
    throw new DeqError('DEQ_ERR_TEXT_INVALID', 'text must be a string or UTF-8 bytes');
  }
  if (text.length > maxChars) throw new DeqError('DEQ_ERR_TEXT_TOO_LONG', `text is ${text.length} characters; the limit is ${maxChars}`);
  if (text.trim() === '') throw new DeqError('DEQ_ERR_TEXT_INVALID', 'text is empty');
  return text;
}
