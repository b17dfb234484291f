import multipart from '@fastify/multipart';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { DeqError, isDeqError, quote } from '../../errors.js';
import { imageToTensor } from '../../preprocess/image.js';
import { parseMediaType } from '../media-type.js';
import { findModel } from '../models.js';
import { runSolve, solverSummary, SOLVER_SUMMARY_SCHEMA } from '../solve.js';
import { parseSolverControl, type WireSolverOptions } from '../solver-options.js';
import type { ServerState } from '../state.js';

interface ClassifyQuery extends WireSolverOptions {
  top_k?: string;
}

const SOLVER_QUERY = { tol: {}, max_iter: {}, solver: {}, stop_mode: {}, deadline_ms: {} };

const CLASSIFY_RESPONSE = {
  type: 'object',
  required: ['model', 'label', 'labels', 'solver', 'timing'],
  properties: {
    model: { type: 'string' },
    label: { type: 'string' },
    labels: {
      type: 'array',
      items: { type: 'object', required: ['label', 'index', 'probability'], properties: { label: { type: 'string' }, index: { type: 'integer' }, probability: { type: 'number' } } },
    },
    solver: SOLVER_SUMMARY_SCHEMA,
    timing: { type: 'object', properties: { queue_ms: { type: 'number' }, solve_ms: { type: 'number' }, total_ms: { type: 'number' } } },
  },
} as const;

/** POST /v1/models/:name/classify: an image as multipart field `image` or as a raw image/* body. */
export const classifyRoutes: FastifyPluginAsync<{ state: ServerState }> = async (app, { state }) => {
  const { config } = state;
  // Text fields besides the file are skipped (a few, small); the file must be named "image".
  await app.register(multipart, {
    limits: { fileSize: config.imageLimitBytes, files: 1, fields: 4, fieldSize: 1024, parts: 5, headerPairs: 50 },
    throwFileSizeLimit: true,
  });
  // Decided from the header alone, before any body byte is read: a 10 MB JSON
  // body is never parsed only to be refused. Parameters on image types
  // (`image/png; charset=binary`) mean nothing to a decoder, so they are dropped.
  app.addHook('onRequest', async (req) => {
    if (req.method !== 'POST') return;
    const media = parseMediaType(req.headers['content-type']);
    if (media?.type === 'multipart/form-data') {
      if (!media.params.boundary) throw new DeqError('DEQ_ERR_INVALID_INPUT', 'multipart/form-data needs a boundary parameter');
      return;
    }
    if (media?.type.startsWith('image/')) {
      req.headers['content-type'] = media.type;
      return;
    }
    throw new DeqError('DEQ_ERR_UNSUPPORTED_MEDIA_TYPE', `send the image as multipart/form-data (field "image") or as a raw image/* body (got ${quote(req.headers['content-type'] ?? '', 60)})`);
  });
  // Raw uploads: the body stays bytes; sharp decides what it really is.
  app.addContentTypeParser(/^image\/[a-z0-9.+-]+$/i, { parseAs: 'buffer', bodyLimit: config.imageLimitBytes }, (_req, body, done) => done(null, body));

  app.post<{ Params: { name: string }; Querystring: ClassifyQuery }>('/v1/models/:name/classify', {
    bodyLimit: config.imageLimitBytes,
    schema: {
      querystring: { type: 'object', properties: { top_k: {}, ...SOLVER_QUERY } },
      response: { 200: CLASSIFY_RESPONSE },
    },
  }, async (req) => {
    const t0 = performance.now();
    const model = findModel(state.models, req.params.name);
    const man = model.manifest;
    if (man.task !== 'image-classification' || !man.preprocess || !man.labels) {
      throw new DeqError('DEQ_ERR_WRONG_TASK', `${model.name} is a ${man.task} model; use /v1/models/${model.name}/score`);
    }
    const control = parseSolverControl(req.query, config);
    const bytes = await readImage(req);
    const input = await imageToTensor(bytes, man.preprocess, { maxPixels: config.maxImagePixels });
    const result = await runSolve(req, model, { input, batch: 1, solver: control.solver, deadline: control.deadline, outputs: [man.outputs.logits] });
    const logits = result.outputs[man.outputs.logits].data as Float32Array;
    const probs = softmax(logits);
    const k = Math.min(topK(req.query.top_k, config.topK), probs.length);
    const order = Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a]).slice(0, k);
    const labels = order.map((i) => ({ label: man.labels![i], index: i, probability: probs[i] }));
    return {
      model: model.name,
      label: labels[0].label,
      labels,
      solver: solverSummary(result),
      timing: { queue_ms: result.queueMs, solve_ms: result.timing.solveMs, total_ms: performance.now() - t0 },
    };
  });
};

async function readImage(req: FastifyRequest): Promise<Uint8Array> {
  if (req.isMultipart()) {
    try {
      for await (const part of req.parts()) {
        if (part.type === 'field') {
          if (part.fieldname === 'image') throw new DeqError('DEQ_ERR_INVALID_INPUT', 'field "image" must be a file upload, not a text field (curl -F image=@photo.png)');
          continue; // other text fields are skipped, as docs/server.md says
        }
        if (part.fieldname !== 'image') {
          part.file.resume(); // an unconsumed stream would hang the request
          throw new DeqError('DEQ_ERR_INVALID_INPUT', `multipart file field must be named "image" (got ${quote(part.fieldname, 40)})`);
        }
        return await part.toBuffer();
      }
    } catch (err) {
      throw multipartError(err);
    }
    throw new DeqError('DEQ_ERR_INVALID_INPUT', 'multipart body has no file; send the image in field "image"');
  }
  if (Buffer.isBuffer(req.body)) return req.body;
  throw new DeqError('DEQ_ERR_UNSUPPORTED_MEDIA_TYPE', 'send the image as multipart/form-data (field "image") or as a raw image/* body');
}

/** Busboy reports a malformed body (no closing boundary, truncated part) with plain Errors: they are the client's. */
function multipartError(err: unknown): unknown {
  if (isDeqError(err)) return err;
  const e = err as { code?: string; message?: string };
  if (typeof e?.code === 'string' && e.code.startsWith('FST_')) return err; // limits: mapped by the errors plugin
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  return new DeqError('DEQ_ERR_INVALID_INPUT', `malformed multipart body: ${msg.split('\n')[0].slice(0, 120)}`);
}

function topK(raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const k = Number(raw);
  if (!Number.isInteger(k) || k < 1) throw new DeqError('DEQ_ERR_INVALID_INPUT', `top_k must be an integer ≥ 1 (got ${JSON.stringify(raw.slice(0, 20))})`);
  return k;
}

function softmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += out[i] = Math.exp(logits[i] - max);
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}
