import multipart from '@fastify/multipart';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { DeqError, isDeqError, quote } from '../../errors.js';
import { ImageClassifier } from '../../pipelines/image-classification.js';
import { parseMediaType } from '../media-type.js';
import { findModel, type ServedModel } from '../models.js';
import { runSolve, solverSummary, SOLVER_SUMMARY_SCHEMA } from '../solve.js';
import { requestControl, solverParamsSchema, type WireSolverOptions } from '../solver-options.js';
import type { ServerState } from '../state.js';
import { sendEventStream, wantsEventStream, type ProgressSink } from '../event-stream.js';

interface ClassifyQuery extends WireSolverOptions {
  top_k?: number;
  /** Also return the raw logits (every class, in model order). */
  logits?: boolean;
  /** Also return the input tensor the model saw, after preprocessing (the playground draws it). */
  preprocessed?: boolean;
}

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
    logits: { type: 'array', items: { type: 'number' } },
    input: { type: 'object', properties: { shape: { type: 'array', items: { type: 'integer' } }, data: { type: 'array', items: { type: 'number' } } } },
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
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          top_k: { type: 'integer', minimum: 1, description: 'an integer ≥ 1' },
          logits: { type: 'boolean', description: 'true or false' },
          preprocessed: { type: 'boolean', description: 'true or false' },
          ...solverParamsSchema(config),
        },
      },
      response: { 200: CLASSIFY_RESPONSE },
    },
  }, async (req, reply) => {
    const t0 = performance.now();
    const model = findModel(state.models, req.params.name);
    const classifier = classifierOf(model);
    const control = requestControl(model, req.query, config);
    const bytes = await readImage(req);
    const input = await classifier.preprocess(bytes, { maxPixels: config.maxImagePixels });
    // Copied before the solve: the input's buffer is transferred to the worker.
    const seen = req.query.preprocessed ? Array.from(input) : undefined;
    const answer = async (progress?: ProgressSink) => {
      // The pipeline's own steps, its solve on the worker pool (as /score's TextScorer).
      const { classification: { label, labels, logits }, result } = await classifier.classify(input,
        (r) => runSolve(req, model, { input: r.input, batch: r.batch, outputs: [classifier.logitsOutput], solver: control.solver, deadline: control.deadline }, progress), req.query.top_k ?? config.topK);
      return {
        model: model.name,
        label,
        labels,
        ...(req.query.logits ? { logits: Array.from(logits) } : {}),
        ...(seen ? { input: { shape: [classifier.preprocessSpec.channels, classifier.preprocessSpec.height, classifier.preprocessSpec.width], data: seen } } : {}),
        solver: solverSummary(result),
        timing: { queue_ms: result.queueMs, solve_ms: result.timing.solveMs, total_ms: performance.now() - t0 },
      };
    };
    if (wantsEventStream(req)) {
      const k = req.query.top_k ?? config.topK;
      return sendEventStream(reply, answer, (e) => (e.top1 === undefined ? e : {
        ...e, label: classifier.labels[e.top1],
        ...(e.top_k ? { top_k: e.top_k.slice(0, k).map((t) => ({ ...t, label: classifier.labels[t.index] })) } : {}),
      }));
    }
    return answer();
  });
};

// One classifier per model, built on first use; a model of another task is refused (by ImageClassifier).
const classifiers = new WeakMap<ServedModel, ImageClassifier>();
function classifierOf(model: ServedModel): ImageClassifier {
  let c = classifiers.get(model);
  if (!c) classifiers.set(model, (c = new ImageClassifier(model.manifest, model.name)));
  return c;
}

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

