import type { FastifyPluginAsync } from 'fastify';
import { DeqError } from '../../errors.js';
import { findModel, type ServedModel } from '../models.js';
import type { PoolResult } from '../pool.js';
import { planWindows, scoreStream, validateText, windowScoringOf, type StreamScores, type WindowScoring } from '../../runtime/language-model.js';
import { runSolve, SOLVER_SUMMARY_SCHEMA, type SolverSummary } from '../solve.js';
import { parseSolverControl, type WireSolverOptions } from '../solver-options.js';
import type { ServerState } from '../state.js';
import type { TextTokenizer } from '../tokenizers.js';

interface ScoreBody extends WireSolverOptions {
  text?: string;
  texts?: string[];
}

const SCORE_BODY = {
  type: 'object',
  properties: {
    text: { type: 'string' },
    texts: { type: 'array', minItems: 1, items: { type: 'string' } },
    tol: {}, max_iter: {}, solver: {}, stop_mode: {}, deadline_ms: {},
  },
  oneOf: [{ required: ['text'], not: { required: ['texts'] } }, { required: ['texts'], not: { required: ['text'] } }],
} as const;

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
export const scoreRoutes: FastifyPluginAsync<{ state: ServerState; tokenizerFor: (m: ServedModel) => Promise<TextTokenizer> }> = async (app, { state, tokenizerFor }) => {
  const { config } = state;
  // Window layout per model, derived once (it looks bos up in the vocabulary).
  const layouts = new WeakMap<ServedModel, WindowScoring>();
  const layoutOf = (m: ServedModel): WindowScoring => {
    let l = layouts.get(m);
    if (!l) {
      l = windowScoringOf(m.manifest, m.vocab ?? [], { batch: config.scoreBatch, requireConvergence: false });
      layouts.set(m, l);
    }
    return l;
  };
  app.post<{ Params: { name: string }; Body: ScoreBody }>('/v1/models/:name/score', {
    schema: { body: SCORE_BODY, response: { 200: SCORE_RESPONSE } },
  }, async (req) => {
    const model = findModel(state.models, req.params.name);
    const man = model.manifest;
    if (man.task !== 'language-model' || !man.tokenizer) {
      throw new DeqError('DEQ_ERR_WRONG_TASK', `${model.name} is an ${man.task} model; use /v1/models/${model.name}/classify`);
    }
    const texts = req.body.texts ?? [req.body.text!];
    if (texts.length > config.maxTexts) throw new DeqError('DEQ_ERR_INVALID_INPUT', `at most ${config.maxTexts} texts per request (got ${texts.length})`);
    for (const [i, t] of texts.entries()) {
      try {
        validateText(t, config.maxTextChars);
      } catch (err) {
        if (err instanceof DeqError) err.message = `texts[${i}]: ${err.message}`;
        throw err;
      }
    }
    const control = parseSolverControl(req.body, config);
    const tokenizer = await tokenizerFor(model);
    const encoded = texts.map((t, i) => {
      const e = tokenizer.encode(t);
      if (e.ids.length === 0) throw new DeqError('DEQ_ERR_TEXT_INVALID', `texts[${i}] has no token to score`);
      return e;
    });
    const spec = layoutOf(model);
    admitByCost(encoded.map((e) => e.ids.length), spec, config.maxScoreWindows);
    // Texts are scored one after another, each in as few batched solves as its windows allow.
    const results = [];
    for (const e of encoded) {
      let last: PoolResult | undefined;
      let stopped = false;
      const scores = await scoreStream(e.ids, spec, async (r) => {
        last = await runSolve(req, model, { ...r, outputs: r.outputs ? [...r.outputs] : undefined, solver: control.solver, deadline: control.deadline });
        stopped ||= last.solver.stopped;
        return last;
      }, undefined);
      let total = 0, unk = 0;
      const tokens = Array.from(scores.logprobs, (v, p) => {
        total += v;
        unk += e.unk[p];
        return { token: e.tokens[p], id: e.ids[p], logprob: v, unk: e.unk[p] === 1 };
      });
      results.push({
        tokens,
        token_count: tokens.length,
        unk_count: unk,
        total_logprob: total,
        perplexity: Math.exp(-total / tokens.length),
        windows: scores.windows,
        solver: windowSummary(last!, scores, stopped),
      });
    }
    return { model: model.name, results, solver: merge(results.map((r) => r.solver)) };
  });
};

/**
 * Admission by cost: a request's solver work grows with its context windows, not
 * its bytes (32 × 10,000 one-letter words are 640 KB and ~10,000 windows, half a
 * minute of a worker). Refused before any solving, with what it would have cost.
 */
function admitByCost(tokenCounts: readonly number[], spec: WindowScoring, maxWindows: number): void {
  let windows = 0, tokens = 0;
  for (const n of tokenCounts) {
    windows += planWindows(n, spec.context, spec.stride).length;
    tokens += n;
  }
  if (windows > maxWindows) {
    throw new DeqError('DEQ_ERR_TOO_COSTLY',
      `this request needs ${windows} context windows (${tokenCounts.length} text(s), ${tokens} tokens; ${spec.context}-token windows every ${spec.stride}), over the ${maxWindows}-window limit per request (--max-score-windows); send fewer or shorter texts`);
  }
}

function merge(list: SolverSummary[]): SolverSummary {
  const first = list[0];
  return {
    ...first,
    iterations: Math.max(...list.map((s) => s.iterations)),
    residual: list.some((s) => s.residual === null) ? null : Math.max(...list.map((s) => s.residual as number)),
    converged: list.every((s) => s.converged),
    diverged: list.some((s) => s.diverged),
    deadline_exceeded: list.some((s) => s.deadline_exceeded),
  };
}

/** A text's solver summary over its windows: the worst window's iterations and residual. */
function windowSummary(last: PoolResult, s: StreamScores, stopped: boolean): SolverSummary {
  const o = last.options;
  return {
    method: o.method, tol: o.tol, max_iter: o.maxIter, stop_mode: o.stopMode,
    iterations: Math.max(...s.iterations),
    residual: Math.max(...s.residuals),
    converged: s.converged.every((c) => c === 1),
    diverged: s.diverged.some((d) => d === 1),
    deadline_exceeded: stopped,
  };
}
