import multipart from '@fastify/multipart';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { DeqError } from '../../errors.js';
import { ImageClassifier } from '../../pipelines/image-classification.js';
import { findModel, type ServedModel } from '../models.js';
import { runSolve, solverSummary, SOLVER_SUMMARY_SCHEMA } from '../solve.js';
import { requestControl, solverParamsSchema, type WireSolverOptions } from '../solver-options.js';
import type { ServerState } from '../state.js';

interface ClassifyQuery extends WireSolverOptions {
  top_k?: number;
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
    solver: SOLVER_SUMMARY_SCHEMA,
    timing: { type: 'object', properties: { queue_ms: { type: 'number' }, solve_ms: { type: 'number' }, total_ms: { type: 'number' } } },
  },
} as const;

/** POST /v1/models/:name/classify: an image as multipart field `image` or as a raw image/* body. */
export const classifyRoutes: FastifyPluginAsync<{ state: ServerState }> = async (app, { state }) => {
  const { config } = state;
  await app.register(multipart, {
    limits: { fileSize: config.imageLimitBytes, files: 1, fields: 0, parts: 2, headerPairs: 50 },
    throwFileSizeLimit: true,
  });
  // Raw uploads: the body stays bytes; sharp decides what it really is.
  app.addContentTypeParser(/^image\/[a-z0-9.+-]+$/i, { parseAs: 'buffer', bodyLimit: config.imageLimitBytes }, (_req, body, done) => done(null, body));

  app.post<{ Params: { name: string }; Querystring: ClassifyQuery }>('/v1/models/:name/classify', {
    bodyLimit: config.imageLimitBytes,
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: { top_k: { type: 'integer', minimum: 1, description: 'an integer ≥ 1' }, ...solverParamsSchema(config) },
      },
      response: { 200: CLASSIFY_RESPONSE },
    },
  }, async (req) => {
    const t0 = performance.now();
    const model = findModel(state.models, req.params.name);
    const classifier = classifierOf(model);
    const control = requestControl(model, req.query, config);
    const bytes = await readImage(req);
    const input = await classifier.preprocess(bytes, { maxPixels: config.maxImagePixels });
    const result = await runSolve(req, model, { input, batch: 1, solver: control.solver, deadline: control.deadline, outputs: [classifier.logitsOutput] });
    const { label, labels } = classifier.postprocess(result.outputs[classifier.logitsOutput].data as Float32Array, req.query.top_k ?? config.topK);
    return {
      model: model.name,
      label,
      labels,
      solver: solverSummary(result),
      timing: { queue_ms: result.queueMs, solve_ms: result.timing.solveMs, total_ms: performance.now() - t0 },
    };
  });
};

// One classifier per model, built on first use; a model of another task is refused.
const classifiers = new WeakMap<ServedModel, ImageClassifier>();
function classifierOf(model: ServedModel): ImageClassifier {
  let c = classifiers.get(model);
  if (!c) {
    if (model.manifest.task !== 'image-classification') {
      throw new DeqError('DEQ_ERR_WRONG_TASK', `${model.name} is a ${model.manifest.task} model; use /v1/models/${model.name}/score`);
    }
    c = new ImageClassifier(model.manifest);
    classifiers.set(model, c);
  }
  return c;
}

async function readImage(req: FastifyRequest): Promise<Uint8Array> {
  if (req.isMultipart()) {
    const part = await req.file();
    if (!part) throw new DeqError('DEQ_ERR_INVALID_INPUT', 'multipart body has no file; send the image in field "image"');
    if (part.fieldname !== 'image') {
      part.file.resume(); // an unconsumed stream would hang the request
      throw new DeqError('DEQ_ERR_INVALID_INPUT', `multipart field must be named "image" (got ${JSON.stringify(part.fieldname.slice(0, 40))})`);
    }
    return part.toBuffer();
  }
  if (Buffer.isBuffer(req.body)) return req.body;
  throw new DeqError('DEQ_ERR_UNSUPPORTED_MEDIA_TYPE', 'send the image as multipart/form-data (field "image") or as a raw image/* body');
}
