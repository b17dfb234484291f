import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { DeqError } from '../../errors.js';
import { findModel, type ServedModel } from '../models.js';
import type { PoolResult } from '../pool.js';
import { runSolve, solverSummary, SOLVER_SUMMARY_SCHEMA, type SolverSummary } from '../solve.js';
import { parseSolverControl, type RequestControl, type WireSolverOptions } from '../solver-options.js';
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

/** One window of one text: `length` inputs, scoring targets from `from` (window-relative) on. */
interface Window {
  text: number;
  start: number;
  length: number;
  from: number;
}

/** POST /v1/models/:name/score: per-token log-probabilities of texts under a DEQ language model. */
export const scoreRoutes: FastifyPluginAsync<{ state: ServerState; tokenizerFor: (m: ServedModel) => Promise<TextTokenizer> }> = async (app, { state, tokenizerFor }) => {
  const { config } = state;
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
    for (const [i, t] of texts.entries()) checkText(t, i, config.maxTextChars);
    const control = parseSolverControl(req.body, config);
    const tokenizer = await tokenizerFor(model);
    // The tokenizer ends each sentence with eos; the scorer prepends bos, so every token is predicted.
    const bos = model.vocab?.indexOf(man.tokenizer.bos) ?? -1;
    if (bos < 0) throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `${model.name}: vocabulary has no bos symbol`);
    const encoded = texts.map((t) => {
      const e = tokenizer.encode(t);
      const ids = new Int32Array(e.ids.length + 1);
      ids[0] = bos;
      ids.set(e.ids, 1);
      const unk = new Uint8Array(e.unk.length + 1);
      unk.set(e.unk, 1);
      return { ids, tokens: [man.tokenizer!.bos, ...e.tokens], unk };
    });
    for (const [i, e] of encoded.entries()) {
      if (e.ids.length < 2) throw new DeqError('DEQ_ERR_TEXT_INVALID', `texts[${i}] has no token to score`);
    }
    const context = man.tokenizer.context;
    const stride = Math.max(1, Math.min(man.tokenizer.stride ?? context, context));
    const windows = encoded.flatMap((e, i) => windowsOf(i, e.ids.length - 1, context, stride));

    const logprobs = encoded.map((e) => new Float64Array(e.ids.length - 1));
    const rowsOf = encoded.map(() => [] as { result: PoolResult; row: number }[]);
    // Windows of equal length share one batched solve; lengths differ only for short texts.
    const byLength = new Map<number, Window[]>();
    for (const w of windows) byLength.set(w.length, [...(byLength.get(w.length) ?? []), w]);
    for (const [length, group] of byLength) {
      for (let at = 0; at < group.length; at += config.maxBatch) {
        const chunk = group.slice(at, at + config.maxBatch);
        const result = await solveWindows(req, model, chunk, length, encoded.map((e) => e.ids), control);
        const lp = result.outputs[man.outputs.target_logprobs].data as Float32Array;
        chunk.forEach((w, row) => {
          for (let j = w.from; j < length; j++) logprobs[w.text][w.start + j] = lp[row * length + j];
          rowsOf[w.text].push({ result, row });
        });
      }
    }
    const results = encoded.map((e, i) => {
      const lp = logprobs[i];
      let total = 0, unk = 0;
      const tokens = Array.from(lp, (v, p) => {
        total += v;
        unk += e.unk[p + 1];
        return { token: e.tokens[p + 1], id: e.ids[p + 1], logprob: v, unk: e.unk[p + 1] === 1 };
      });
      return {
        tokens,
        token_count: lp.length,
        unk_count: unk,
        total_logprob: total,
        perplexity: Math.exp(-total / lp.length),
        windows: rowsOf[i].length,
        solver: merge(rowsOf[i].map(({ result, row }) => solverSummary(result, [row]))),
      };
    });
    return { model: model.name, results, solver: merge(results.map((r) => r.solver)) };
  });
};

/** Windows over `predictions` target positions: full context each, later windows scoring only what is new. */
export function windowsOf(text: number, predictions: number, context: number, stride: number): Window[] {
  if (predictions <= context) return [{ text, start: 0, length: predictions, from: 0 }];
  const out: Window[] = [];
  let scored = 0;
  for (let start = 0; ; start += stride) {
    const s = Math.min(start, predictions - context);
    out.push({ text, start: s, length: context, from: scored - s });
    scored = s + context;
    if (scored >= predictions) return out;
  }
}

function solveWindows(req: FastifyRequest, model: ServedModel, chunk: Window[], length: number, ids: Int32Array[], control: RequestControl): Promise<PoolResult> {
  const man = model.manifest;
  const input = new BigInt64Array(chunk.length * length);
  const targets = new BigInt64Array(chunk.length * length);
  chunk.forEach((w, row) => {
    const src = ids[w.text];
    for (let j = 0; j < length; j++) {
      input[row * length + j] = BigInt(src[w.start + j]);
      targets[row * length + j] = BigInt(src[w.start + j + 1]);
    }
  });
  const targetsName = man.graphs.head.inputs[1].name;
  return runSolve(req, model, {
    input, batch: chunk.length, length, headInputs: { [targetsName]: targets },
    outputs: [man.outputs.target_logprobs], solver: control.solver, deadline: control.deadline,
  });
}

function checkText(t: string, i: number, max: number): void {
  if (t.length > max) throw new DeqError('DEQ_ERR_TEXT_TOO_LONG', `texts[${i}] has ${t.length} characters; the limit is ${max}`);
  if (t.trim() === '') throw new DeqError('DEQ_ERR_TEXT_INVALID', `texts[${i}] is empty`);
  // Lone surrogates cannot be encoded as UTF-8.
  if (!(t as string & { isWellFormed(): boolean }).isWellFormed()) throw new DeqError('DEQ_ERR_TEXT_INVALID', `texts[${i}] is not valid Unicode (lone surrogate)`);
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
