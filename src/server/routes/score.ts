import type { FastifyPluginAsync } from 'fastify';
import { DeqError } from '../../errors.js';
import { checkOutputCount } from '../output-cap.js';
import { planWindows, TextScorer, type WindowScoring } from '../../pipelines/text-scoring.js';
import { findModel, taskRoute, type ServedModel } from '../models.js';
import { mergeSummaries, runSolve, SOLVER_SUMMARY_SCHEMA, wireSummary } from '../solve.js';
import { requestControl, solverParamsSchema, type WireSolverOptions } from '../solver-options.js';
import type { ServerState } from '../state.js';
import type { ServerConfig } from '../config.js';
import { sendEventStream, wantsEventStream, type ProgressSink } from '../event-stream.js';

interface ScoreBody extends WireSolverOptions {
  text?: string;
  texts?: string[];
  /** Start each window's solve from the previous window's fixed point (windows then go one at a time). */
  warm_start?: boolean;
}

function scoreBody(config: Readonly<ServerConfig>) {
  return {
    type: 'object',
    additionalProperties: false,
    properties: {
      text: { type: 'string' },
      texts: { type: 'array', minItems: 1, items: { type: 'string' } },
      warm_start: { type: 'boolean', description: 'true or false' },
      ...solverParamsSchema(config),
    },
    oneOf: [{ required: ['text'], not: { required: ['texts'] } }, { required: ['texts'], not: { required: ['text'] } }],
  } as const;
}

const TOKEN = {
  type: 'object',
  properties: { token: { type: 'string' }, id: { type: 'integer' }, logprob: { type: 'number' }, unk: { type: 'boolean' } },
} as const;

const SCORE_RESPONSE = {
  type: 'object',
  properties: {
    model: { type: 'string' },
    results: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          tokens: { type: 'array', items: TOKEN },
          token_count: { type: 'integer' },
          unk_count: { type: 'integer' },
          total_logprob: { type: 'number' },
          perplexity: { type: 'number' },
          windows: { type: 'integer' },
          solver: SOLVER_SUMMARY_SCHEMA,
        },
      },
    },
    solver: SOLVER_SUMMARY_SCHEMA,
  },
} as const;

/** POST /v1/models/:name/score: per-token log-probabilities of texts under a DEQ language model. */
export const scoreRoutes: FastifyPluginAsync<{ state: ServerState }> = async (app, { state }) => {
  const { config } = state;
  // Tokenizer and window layout per model, built once (the layout looks bos up in the vocabulary).
  const scorers = new WeakMap<ServedModel, TextScorer>();
  const scorerOf = (m: ServedModel): TextScorer => {
    let s = scorers.get(m);
    if (!s) {
      if (m.manifest.task !== 'language-model') {
        throw new DeqError('DEQ_ERR_WRONG_TASK', `${m.name} is a ${m.manifest.task} model, not a language model; use ${taskRoute(m)}`);
      }
      s = new TextScorer(m.manifest, m.vocab, { maxChars: config.maxTextChars, batch: config.scoreBatch, requireConvergence: false });
      scorers.set(m, s);
    }
    return s;
  };
  app.post<{ Params: { name: string }; Body: ScoreBody }>('/v1/models/:name/score', {
    schema: { body: scoreBody(config), response: { 200: SCORE_RESPONSE } },
  }, async (req, reply) => {
    const model = findModel(state.models, req.params.name);
    const scorer = scorerOf(model);
    const texts = req.body.texts ?? [req.body.text!];
    if (texts.length > config.maxTexts) throw new DeqError('DEQ_ERR_INVALID_INPUT', `at most ${config.maxTexts} texts per request (got ${texts.length})`);
    // Every text is checked before any is scored: a bad last text costs no solve.
    // The window budget is charged text by text, so an over-budget request stops
    // tokenizing (HTTP-thread work) as soon as it is over.
    const charge = windowBudget(scorer.layout, config.maxScoreWindows, texts.length);
    const encoded = texts.map((t, i) => {
      let e;
      try {
        e = scorer.encode(t);
      } catch (err) {
        if (err instanceof DeqError) err.message = `texts[${i}]: ${err.message}`;
        throw err;
      }
      charge(e.ids.length, i);
      return e;
    });
    // One result per token: the output cap counts them, before any solve.
    checkOutputCount(encoded.reduce((n, e) => n + e.ids.length, 0), config.maxOutputElements, 'one log-probability per token of the texts');
    const control = requestControl(model, req.body, config);
    const answer = async (progress?: ProgressSink) => {
      // Streamed, each event names the text, the solve (a batch of its windows) and the window
      // (its index in the text): a solve's rows are consecutive windows, solves run in order.
      let text = 0, solve = 0, firstWindow = 0;
      const run = (r: Parameters<typeof runSolve>[2]) => {
        const at = { text, solve: solve++ }, base = firstWindow;
        firstWindow += r.batch;
        return runSolve(req, model, r, progress && ((events) => progress(events.map((e) => ({ ...e, ...at, window: base + e.sample })))));
      };
      // Texts are scored one after another, each in as few batched solves as its windows allow.
      const results = [];
      for (const e of encoded) {
        const s = await scorer.scoreEncoded(e, (r) => run({ ...r, solver: control.solver, deadline: control.deadline }), undefined, { warmStart: req.body.warm_start });
        text++;
        firstWindow = 0;
        results.push({
        tokens: s.tokens,
        token_count: s.tokens.length,
        unk_count: s.unkCount,
        total_logprob: s.totalLogprob,
        perplexity: s.perplexity,
        windows: s.windows,
        solver: wireSummary(s.solver, s.options, s.solver.stopped),
        });
      }
      return { model: model.name, results, solver: mergeSummaries(results.map((r) => r.solver)) };
    };
    if (wantsEventStream(req)) return sendEventStream(reply, answer);
    return answer();
  });
};

/**
 * Admission by cost: a request's solver work grows with its context windows, not
 * its bytes (32 × 10,000 one-letter words are 640 KB and ~10,000 windows, half a
 * minute of a worker). Refused before any solving, with what it would have cost.
 * Returns the charge for one text (its token count and index).
 */
function windowBudget(spec: WindowScoring, maxWindows: number, textCount: number): (tokens: number, index: number) => void {
  let windows = 0, tokens = 0;
  return (n, i) => {
    windows += planWindows(n, spec.context, spec.stride).length;
    tokens += n;
    if (windows > maxWindows) {
      const which = i + 1 < textCount ? `the first ${i + 1} of ${textCount} texts` : `${textCount} text(s)`;
      throw new DeqError('DEQ_ERR_TOO_COSTLY',
        `this request needs ${i + 1 < textCount ? 'more than ' : ''}${windows} context windows (${which}: ${tokens} tokens; ${spec.context}-token windows every ${spec.stride}), over the ${maxWindows}-window limit per request (--max-score-windows); send fewer or shorter texts`);
    }
  };
}
