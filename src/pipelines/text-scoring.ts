import { DeqError } from '../errors.js';
import { validateText } from '../preprocess/text.js';
import { createTokenizer, type Encoded, type TextTokenizer } from '../preprocess/tokenizer.js';
import { DeqModel, type InferRequest, type Manifest, type SessionConfig } from '../runtime/index.js';
import { summarizeSolve, type SolveRows, type SolveSummary, type SolverOptions, type SolverSettings } from '../solver/index.js';

// Text scoring, one home: window layout, batched window solves, per-token results
// and totals. The CLI, the library, evaluation and the /score route all come here.

export interface TextScoringConfig {
  /** Longest accepted text, in UTF-16 code units (bytes/4 is checked before decoding a buffer). */
  maxChars: number;
  /** Windows per inference call. */
  batch: number;
  /** Sliding-window stride in tokens; defaults to the manifest's `tokenizer.stride`, else context/2. */
  stride?: number;
  /** Throw DEQ_ERR_NOT_CONVERGED when a window's solve stops above tolerance (default: report it). */
  requireConvergence: boolean;
}

export const TEXT_SCORING_DEFAULTS: Readonly<TextScoringConfig> = Object.freeze({ maxChars: 20_000, batch: 16, requireConvergence: false });

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
  /**
   * State values per sequence position when the state's first axis is the sequence
   * (shape [-1, …]): what lets a window warm-start from the previous one. 0 otherwise.
   */
  positionWidth: number;
}

/**
 * A language-model bundle's window layout, from its manifest: the tokenizer's context,
 * `stride` (else the manifest's, else context/2), the head's targets input and
 * target_logprobs output, and the vocabulary's bos id.
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
  const positionWidth = m.state.shape[0] === -1 && !m.state.shape.slice(1).includes(-1) ? m.state.shape.slice(1).reduce((a, b) => a * b, 1) : 0;
  return { context, stride, batch: opts.batch, bosId, vocabSize: vocab.length, targetsInput, targetOutput, requireConvergence: opts.requireConvergence, positionWidth };
}

/** The solver settings a window ran with, as every inference result reports them. */
export type RunOptions = Pick<SolverSettings, 'method' | 'tol' | 'stopMode' | 'maxIter'>;

/** What scoring needs of an inference result, whether it ran here or on a worker. */
export interface WindowResult {
  outputs: Record<string, { data: Float32Array | BigInt64Array }>;
  /** z*, when the request asked (returnState: window warm starts). */
  state?: { data: Float32Array | BigInt64Array };
  solver: SolveRows & { stopped: boolean };
  options: RunOptions;
}

/** Runs one batched inference: DeqModel.infer in-process, or a worker pool's submit in the server. */
export type WindowRunner = (req: InferRequest) => Promise<WindowResult>;

/** Natural-log probabilities of a token-id stream, with the solver's per-window outcome. */
export interface StreamScores {
  logprobs: Float64Array;
  windows: number;
  /**
   * Per window: f evaluations, residual of the iterate used, converged and diverged
   * flags (a diverged window is scored from its best finite iterate), and whether
   * a deadline cut any solve short.
   */
  solver: SolveRows & { residual: Float64Array; stopped: boolean };
  /** The solver settings the windows ran with. */
  options: RunOptions;
  /** Wall time of the inference calls. */
  ms: number;
}

/**
 * Scores a stream of ids with sliding windows (planWindows): each window is
 * [bos, t_start … t_{start+L−2}] → log p(t_start … t_{start+L−1}), only the
 * `targetOutput` head output is fetched (never the B×T×|V| table), and every id
 * is scored exactly once.
 */
export async function scoreStream(ids: Int32Array, spec: WindowScoring, run: WindowRunner, solver?: Partial<SolverOptions>, opts: WindowOptions = {}): Promise<StreamScores> {
  const plan = planWindows(ids.length, spec.context, spec.stride);
  const warm = opts.warmStart === true;
  if (warm && spec.positionWidth === 0) throw new DeqError('DEQ_ERR_INVALID_INPUT', 'this model\'s state has no leading sequence axis: its windows cannot warm-start from each other');
  // A warm start needs the previous window's z*: windows go one at a time.
  const perCall = warm ? 1 : spec.batch;
  let prev: { z: Float32Array; start: number; length: number } | null = null;
  if (plan.length === 0) throw new DeqError('DEQ_ERR_TEXT_INVALID', 'nothing to score: the token stream is empty');
  const logprobs = new Float64Array(ids.length);
  const iterations = new Int32Array(plan.length);
  const residual = new Float64Array(plan.length);
  const converged = new Uint8Array(plan.length);
  const diverged = new Uint8Array(plan.length);
  const bos = BigInt(spec.bosId);
  for (let i = 0; i < ids.length; i++) {
    if (!(ids[i] >= 0 && ids[i] < spec.vocabSize)) throw new DeqError('DEQ_ERR_INVALID_INPUT', `token id ${ids[i]} at ${i} is outside the vocabulary of ${spec.vocabSize}`);
  }
  let ms = 0;
  let stopped = false;
  let options: RunOptions | undefined;
  for (let w0 = 0; w0 < plan.length;) {
    // batch consecutive windows of one length (only a short single window differs)
    const L = plan[w0].length;
    let w1 = w0;
    while (w1 < plan.length && w1 - w0 < perCall && plan[w1].length === L) w1++;
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
    const z0 = warm && prev ? shiftedState(prev, plan[w0].start, L, spec.positionWidth) : undefined;
    const t0 = performance.now();
    const res = await run({
      input, batch: b, length: L,
      headInputs: { [spec.targetsInput]: targets },
      outputs: [spec.targetOutput],
      solver,
      ...(warm ? { returnState: true, z0 } : {}),
    });
    if (warm && res.state) prev = { z: res.state.data as Float32Array, start: plan[w0].start, length: L };
    ms += performance.now() - t0;
    options ??= res.options;
    stopped ||= res.solver.stopped;
    const lp = res.outputs[spec.targetOutput].data as Float32Array;
    for (let j = 0; j < b; j++) {
      const { start, scoreFrom } = plan[w0 + j];
      const w = w0 + j;
      iterations[w] = res.solver.iterations[j];
      residual[w] = res.solver.residual[j];
      converged[w] = res.solver.converged[j];
      diverged[w] = res.solver.diverged[j];
      if (spec.requireConvergence && !converged[w]) {
        throw new DeqError('DEQ_ERR_NOT_CONVERGED', `window ${w} stopped at residual ${residual[w].toExponential(2)} after ${iterations[w]} evaluations`);
      }
      for (let t = scoreFrom; t < L; t++) {
        const v = lp[j * L + t];
        if (!Number.isFinite(v)) throw new DeqError('DEQ_ERR_DIVERGED', `non-finite log-probability at token ${start + t} (window ${w}, tokens ${start}…${start + L - 1})`);
        logprobs[start + t] = v;
      }
    }
    w0 = w1;
  }
  return { logprobs, windows: plan.length, solver: { iterations, residual, converged, diverged, stopped }, options: options!, ms };
}

/** How a stream's windows are solved. */
export interface WindowOptions {
  /**
   * Start each window's solve from the previous window's fixed point on the positions they
   * share (zeros after), solving windows one at a time. Needs a state whose first axis is
   * the sequence (WindowScoring.positionWidth).
   */
  warmStart?: boolean;
}

/**
 * The initial state of a window at `start` (L positions) from the previous window's z*:
 * position p ≥ 1 takes the previous window's position p + (start − prev.start) when it had one.
 */
function shiftedState(prev: { z: Float32Array; start: number; length: number }, start: number, L: number, width: number): Float32Array {
  const z0 = new Float32Array(L * width);
  const shift = start - prev.start;
  const shared = Math.max(0, Math.min(L, prev.length - shift));
  // Position 0 holds bos here and a token there: it starts from zero, as in a cold solve.
  // (Measured on the first 5,000 Brown test tokens: copying it too moved perplexity by 0.23%,
  // leaving it at zero by 0.01%, for about the same NFE.)
  if (shift >= 0 && shared > 1) z0.set(prev.z.subarray((shift + 1) * width, (shift + shared) * width), width);
  return z0;
}

export interface TokenScore {
  token: string;
  id: number;
  /** Natural log of p(token | left context). */
  logprob: number;
  /** The token is not in the vocabulary; it was scored as `<unk>`. */
  unk: boolean;
}

/** One text's scores: per token, totals, and the solves behind them. */
export interface TextScore {
  tokens: TokenScore[];
  /** Σ logprob over every token, `</s>` and `<unk>` included (natural log). */
  totalLogprob: number;
  /** exp(−totalLogprob / tokens). */
  perplexity: number;
  unkCount: number;
  context: number;
  stride: number;
  /** Windows the text was scored in. */
  windows: number;
  /** The window solves, summarized; `stopped` when a deadline cut one short. */
  solver: SolveSummary & { stopped: boolean };
  /** The solver settings the windows ran with. */
  options: RunOptions;
  timing: { totalMs: number; msPerToken: number };
}

/**
 * A language model's text scoring without the model: tokenizer, window layout,
 * totals. The runner decides where the solves run (in-process or on a worker).
 */
export class TextScorer {
  readonly tokenizer: TextTokenizer;
  readonly layout: WindowScoring;
  readonly config: Readonly<TextScoringConfig>;

  constructor(manifest: Manifest, vocab: string[] | undefined, config: Partial<TextScoringConfig> = {}) {
    const tok = manifest.tokenizer;
    if (manifest.task !== 'language-model' || !tok || !vocab) {
      throw new DeqError('DEQ_ERR_WRONG_TASK', `${manifest.name} is not a language model with a tokenizer`);
    }
    const cfg = { ...TEXT_SCORING_DEFAULTS, ...config };
    if (!(Number.isInteger(cfg.maxChars) && cfg.maxChars > 0)) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `maxChars must be a positive integer (got ${cfg.maxChars})`);
    this.tokenizer = createTokenizer(vocab, tok);
    this.layout = windowScoringOf(manifest, vocab, cfg);
    this.config = Object.freeze(cfg);
  }

  /** Validates and tokenizes a text; throws DEQ_ERR_TEXT_INVALID when nothing is left to score. */
  encode(input: string | Uint8Array): Encoded {
    const enc = this.tokenizer.encode(validateText(input, this.config.maxChars));
    if (enc.ids.length === 0) throw new DeqError('DEQ_ERR_TEXT_INVALID', 'text has no token to score');
    return enc;
  }

  /** Scores a stream of ids with sliding windows; every id is scored exactly once. */
  scoreIds(ids: Int32Array, run: WindowRunner, solver?: Partial<SolverOptions>, opts?: WindowOptions): Promise<StreamScores> {
    return scoreStream(ids, this.layout, run, solver, opts);
  }

  /** Scores an encoded text: per-token log-probabilities and totals. */
  async scoreEncoded(enc: Encoded, run: WindowRunner, solver?: Partial<SolverOptions>, opts?: WindowOptions): Promise<TextScore> {
    const t0 = performance.now();
    const stream = await this.scoreIds(enc.ids, run, solver, opts);
    const tokens: TokenScore[] = new Array(enc.ids.length);
    let total = 0, unkCount = 0;
    for (let i = 0; i < enc.ids.length; i++) {
      tokens[i] = { token: enc.tokens[i], id: enc.ids[i], logprob: stream.logprobs[i], unk: enc.unk[i] === 1 };
      total += stream.logprobs[i];
      unkCount += enc.unk[i];
    }
    const totalMs = performance.now() - t0;
    return {
      tokens,
      totalLogprob: total,
      perplexity: Math.exp(-total / tokens.length),
      unkCount,
      context: this.layout.context,
      stride: this.layout.stride,
      windows: stream.windows,
      solver: { ...summarizeSolve(stream.solver), stopped: stream.solver.stopped },
      options: stream.options,
      timing: { totalMs, msPerToken: totalMs / tokens.length },
    };
  }
}

export interface ScoreOptions extends WindowOptions {
  solver?: Partial<SolverOptions>;
}

/**
 * The text-scoring pipeline on an in-process DeqModel: validation and Brown
 * tokenization, then windows [bos, t₀ … t_{L−2}] → log p(t₀ … t_{L−1}).
 */
export class TextScoringPipeline {
  readonly model: DeqModel;
  readonly scorer: TextScorer;
  readonly #run: WindowRunner;

  constructor(model: DeqModel, config: Partial<TextScoringConfig> = {}) {
    this.model = model;
    this.scorer = new TextScorer(model.manifest, model.bundle.vocab, config);
    this.#run = (req) => model.infer(req);
  }

  static async load(dir: string, config: Partial<TextScoringConfig> = {}, session: Partial<SessionConfig> = {}): Promise<TextScoringPipeline> {
    const model = await DeqModel.load(dir, session);
    try {
      return new TextScoringPipeline(model, config);
    } catch (err) {
      await model.release();
      throw err;
    }
  }

  get tokenizer(): TextTokenizer {
    return this.scorer.tokenizer;
  }

  get context(): number {
    return this.scorer.layout.context;
  }

  get stride(): number {
    return this.scorer.layout.stride;
  }

  get config(): Readonly<TextScoringConfig> {
    return this.scorer.config;
  }

  /** Tokenizes and scores one text. */
  async score(input: string | Uint8Array, opts: ScoreOptions = {}): Promise<TextScore> {
    return this.scorer.scoreEncoded(this.scorer.encode(input), this.#run, opts.solver, opts);
  }

  /** Scores a stream of ids with sliding windows; every id is scored exactly once. */
  scoreIds(ids: Int32Array, opts: ScoreOptions = {}): Promise<StreamScores> {
    return this.scorer.scoreIds(ids, this.#run, opts.solver, opts);
  }

  async release(): Promise<void> {
    await this.model.release();
  }
}
