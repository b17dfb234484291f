import { readFileSync } from 'node:fs';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { ERROR_CATALOGUE, type ErrorCode } from '../errors.js';
import { modelInputs, type TensorSpec } from '../runtime/index.js';
import type { ServedModel } from './models.js';
import type { ServerState } from './state.js';

/**
 * The OpenAPI 3.1 document. @fastify/swagger builds it from the route schemas
 * (query strings, JSON bodies, responses); this module adds what a route schema
 * cannot say: the image and binary-tensor bodies, the error catalogue as
 * responses, the auth scheme, and an example per operation built from the models
 * this server serves, so every example runs against this very server.
 */

type Json = Record<string, any>;

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Routes that are the documentation or the playground themselves: not API operations. */
export const UI_PREFIXES = ['/openapi.json', '/docs', '/playground'] as const;

/** One line per operation, by route (fastify's `:name` form). */
const SUMMARIES: Record<string, [tag: string, summary: string]> = {
  'GET /v1/models': ['v1', 'List the served models with their task, solver defaults, caps and provenance'],
  'GET /v1/models/{name}': ['v1', 'One model: task, endpoint, solver defaults and caps, provenance'],
  'POST /v1/models/{name}/classify': ['v1', 'Classify an image (multipart field "image", or a raw image/* body)'],
  'POST /v1/models/{name}/score': ['v1', 'Per-token log-probabilities and perplexity of texts under a DEQ language model'],
  'POST /v1/models/{name}/predict': ['v1', 'Any model: named inputs as nested arrays in, named outputs out'],
  'GET /v2': ['v2', 'Server metadata (Open Inference Protocol)'],
  'GET /v2/health/live': ['health', 'Liveness'],
  'GET /v2/health/ready': ['health', 'Readiness: 503 until every model has warmed up in every worker'],
  'GET /v2/models/{name}': ['v2', 'Model metadata: input and output tensors'],
  'GET /v2/models/{name}/ready': ['health', 'Model readiness'],
  'POST /v2/models/{name}/infer': ['v2', 'Inference with JSON tensors, or the binary tensor extension'],
  'GET /v2/models/{name}/versions/{version}': ['v2', 'Model metadata of one version'],
  'GET /v2/models/{name}/versions/{version}/ready': ['health', 'Readiness of one model version'],
  'POST /v2/models/{name}/versions/{version}/infer': ['v2', 'Inference against one model version'],
  'GET /metrics': ['health', 'Prometheus metrics (text exposition format)'],
};

/**
 * Registers @fastify/swagger. Call before the routes: it records each route as
 * it is added. `finishOpenApi` adds /openapi.json and /docs once routes exist.
 */
export async function registerOpenApi(app: FastifyInstance, state: ServerState): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'deq-serve',
        version: VERSION,
        description: 'Inference server for Deep Equilibrium Models: each request solves z* = f(z*, u) with Broyden or Anderson over ONNX graphs. ' +
          'v1 routes answer errors as { error, code } with a stable code from the error catalogue; v2 (Open Inference Protocol) routes as { error }.',
        license: { name: 'MIT', identifier: 'MIT' },
      },
      tags: [
        { name: 'v1', description: 'deq-serve\'s own API: classify, score, predict' },
        { name: 'v2', description: 'Open Inference Protocol (KServe v2 / Triton REST), with the binary tensor extension' },
        { name: 'health', description: 'Health, readiness and metrics (open without a key under --open-health)' },
      ],
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'one of the keys given to --api-keys' } } },
    },
    hideUntagged: false,
    transform: ({ schema, url, route }) => {
      const hidden = UI_PREFIXES.some((p) => url === p || url.startsWith(`${p}/`));
      const open = route.config?.open === true;
      return { schema: { ...(schema ?? {}), ...(hidden ? { hide: true } : {}), 'x-open': open } as any, url };
    },
    transformObject: (doc) => finishDocument((doc as { openapiObject: Json }).openapiObject, state),
  });
}

/** /openapi.json, and /docs when configured. Both are ordinary routes: the API key rules apply. */
export async function serveOpenApi(app: FastifyInstance, docs: boolean): Promise<void> {
  app.get('/openapi.json', { schema: { hide: true } }, async (_req, reply) => reply.type('application/json; charset=utf-8').send(app.swagger()));
  if (!docs) return;
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    // The bundled Swagger UI files only: no CDN, and no online validator badge (the plugin's default).
    // The page reads the document at /docs/json: the same app.swagger() object as /openapi.json.
    uiConfig: { deepLinking: true, tryItOutEnabled: true, displayRequestDuration: true },
    // The plugin's own policy (staticCSP: true) adds upgrade-insecure-requests, which breaks the
    // page on a plain-HTTP server reached by another name than localhost, and an outside image host.
    // Swagger UI sets an inline style element: styles may be inline, scripts may not.
    staticCSP: "default-src 'self'; base-uri 'self'; connect-src 'self'; font-src 'self' data:; img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
  });
}

function finishDocument(doc: Json, state: ServerState): Json {
  const { config } = state;
  const auth = config.apiKeys.length > 0;
  doc.components ??= {};
  doc.components.schemas = { ...doc.components.schemas, ...ERROR_SCHEMAS };
  if (auth) doc.security = [{ bearer: [] }];
  const examples = exampleModels(state.models);
  for (const [path, item] of Object.entries(doc.paths as Record<string, Json>)) {
    for (const [method, op] of Object.entries(item)) {
      const route = `${method.toUpperCase()} ${path}`;
      const [tag, summary] = SUMMARIES[route] ?? ['v1', route];
      op.tags = [tag];
      op.summary = summary;
      op.operationId = operationId(method, path);
      if (op['x-open'] && config.openHealth) op.security = [];
      delete op['x-open'];
      addErrors(op, method, path.startsWith('/v2'), auth && !(op.security && op.security.length === 0));
      addParameterExamples(op, path, examples);
      addBodies(op, route, examples, config.imageLimitBytes);
      if (route === 'GET /metrics') op.responses['200'] = { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } };
      if (STREAMED.has(route)) addEventStream(op, route);
    }
  }
  doc.components.schemas = { ...doc.components.schemas, ...EVENT_SCHEMAS };
  return doc;
}

/** The solve routes that answer `Accept: text/event-stream` with per-iteration events (src/server/event-stream.ts). */
const STREAMED = new Set(['POST /v1/models/{name}/classify', 'POST /v1/models/{name}/score', 'POST /v1/models/{name}/predict']);

/** The data of the stream's `iteration` and `error` events (its `result` is the 200 JSON body). */
const EVENT_SCHEMAS = {
  IterationEvent: {
    type: 'object',
    required: ['samples'],
    description: 'data of an `iteration` event: one entry per row the solver iterated',
    properties: {
      samples: {
        type: 'array',
        items: {
          type: 'object',
          required: ['sample', 'iteration', 'residual'],
          properties: {
            sample: { type: 'integer', description: 'row of the solve' },
            iteration: { type: 'integer', minimum: 1, description: 'evaluations of f so far' },
            residual: { type: ['number', 'null'], description: 'residual of this iterate in the stop mode; null when not finite' },
            top1: { type: 'integer', description: 'classifiers: top-1 class of this iterate' },
            label: { type: 'string', description: 'classify: its label' },
            top_k: { type: 'array', items: { type: 'object', properties: { index: { type: 'integer' }, label: { type: 'string' }, probability: { type: 'number' } } } },
            text: { type: 'integer', description: '/score: index of the text' },
            solve: { type: 'integer', description: '/score: the solve (a batch of windows)' },
            window: { type: 'integer', description: '/score: index of the window in its text' },
          },
        },
      },
    },
  },
  StreamError: {
    type: 'object',
    required: ['error', 'code', 'status'],
    description: 'data of an `error` event: what the JSON answer would have said, with its HTTP status',
    properties: { error: { type: 'string' }, code: { type: 'string', enum: Object.keys(ERROR_CATALOGUE) }, status: { type: 'integer' } },
  },
};

/** The 200 answer as server-sent events, beside its JSON form. */
function addEventStream(op: Json, route: string): void {
  const ok = op.responses['200'];
  if (!ok?.content) return;
  const row = route.endsWith('/score') ? '{"sample":0,"iteration":1,"residual":0.21,"text":0,"solve":0,"window":0}' : '{"sample":0,"iteration":1,"residual":0.21}';
  ok.description = 'The answer; with `Accept: text/event-stream`, server-sent events: `iteration` per solver iteration, then `result` (this JSON body) or `error`';
  ok.content['text/event-stream'] = {
    schema: {
      type: 'string',
      description: 'With `Accept: text/event-stream`: an `iteration` event per solver iteration (data: #/components/schemas/IterationEvent), '
        + 'then `result` (data: the application/json answer) or `error` (data: #/components/schemas/StreamError); then the stream ends. '
        + 'A request that fails validation gets a plain JSON error instead. Closing the connection cancels the solve.',
    },
    example: `event: iteration\ndata: {"samples":[${row}]}\n\nevent: result\ndata: {…}\n\n`,
  };
}

/** Every catalogue status, the codes behind it, and which operations can answer it. */
const ERROR_SCHEMAS = {
  Error: {
    type: 'object',
    required: ['error', 'code'],
    properties: {
      error: { type: 'string', description: 'what went wrong, for a person' },
      code: { type: 'string', enum: Object.keys(ERROR_CATALOGUE), description: 'stable code from the error catalogue (src/errors.ts)' },
    },
  },
  V2Error: { type: 'object', required: ['error'], properties: { error: { type: 'string' } } },
};

// Statuses every route can answer (malformed request, timeouts, oversized headers or URL, shutdown, internal).
const ANY_ROUTE = [400, 404, 408, 414, 417, 431, 500, 503];
// And routes that take a body and solve.
const SOLVE_ROUTE = [413, 415, 422, 499, 504];

function addErrors(op: Json, method: string, v2: boolean, needsKey: boolean): void {
  op.responses ??= {};
  const statuses = [...ANY_ROUTE, ...(method === 'post' ? SOLVE_ROUTE : []), ...(needsKey ? [401] : [])].sort((a, b) => a - b);
  for (const status of statuses) {
    const key = String(status);
    const codes = (Object.keys(ERROR_CATALOGUE) as ErrorCode[]).filter((c) => ERROR_CATALOGUE[c].status === status);
    const description = codes.map((c) => `${c}: ${ERROR_CATALOGUE[c].summary}`).join('; ');
    const schema = v2 ? { $ref: '#/components/schemas/V2Error' } : { $ref: '#/components/schemas/Error' };
    if (op.responses[key]) {
      op.responses[key].description ||= description;
      continue; // the route's own schema (readiness 503) stands
    }
    op.responses[key] = { description, content: { 'application/json': { schema } } };
  }
}

interface ExampleModels {
  image?: ServedModel;
  lm?: ServedModel;
  /** The model whose tensors make the shortest example (predict, v2 infer). */
  tensor?: ServedModel;
}

function exampleModels(models: ReadonlyMap<string, ServedModel>): ExampleModels {
  const all = [...models.values()];
  const size = (m: ServedModel) => modelInputs(m.manifest).reduce((n, s) => n + exampleShape(s).reduce((a, b) => a * b, 1), 0);
  return {
    image: all.find((m) => m.manifest.task === 'image-classification'),
    lm: all.find((m) => m.manifest.task === 'language-model'),
    tensor: [...all].sort((a, b) => size(a) - size(b))[0],
  };
}

/** The declared shape with each free dim (-1) set to 4. */
function exampleShape(s: TensorSpec): number[] {
  return s.shape.map((d) => (d === -1 ? 4 : d));
}

function exampleTensor(s: TensorSpec, vocab: number): { shape: number[]; data: number[] } {
  const shape = exampleShape(s);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = Array.from({ length: n }, (_, i) => (s.dtype === 'int64' ? 1 + (i % Math.max(1, Math.min(vocab - 1, 50))) : 0));
  return { shape, data };
}

function nest(data: number[], shape: number[]): unknown {
  if (shape.length <= 1) return data;
  const step = data.length / shape[0];
  return Array.from({ length: shape[0] }, (_, i) => nest(data.slice(i * step, (i + 1) * step), shape.slice(1)));
}

function addParameterExamples(op: Json, path: string, ex: ExampleModels): void {
  const model = path.includes('/classify') ? ex.image : path.includes('/score') ? ex.lm : ex.tensor;
  for (const p of op.parameters ?? []) {
    if (p.in === 'path' && p.name === 'name' && model) p.example = model.name;
    if (p.in === 'path' && p.name === 'version' && model) p.example = model.manifest.version ?? '1';
  }
}

function addBodies(op: Json, route: string, ex: ExampleModels, imageLimit: number): void {
  const json = op.requestBody?.content?.['application/json'];
  if (route.endsWith('/classify')) {
    op.requestBody = {
      required: true,
      description: `An image (PNG, JPEG, WebP, GIF, TIFF, AVIF) of at most ${imageLimit} bytes; the model's preprocessing resizes and normalizes it.`,
      content: {
        'multipart/form-data': {
          schema: { type: 'object', required: ['image'], properties: { image: { type: 'string', format: 'binary', contentMediaType: 'image/*' } } },
          encoding: { image: { contentType: 'image/*' } },
        },
        'image/png': { schema: { type: 'string', format: 'binary', contentMediaType: 'image/png' } },
        'image/jpeg': { schema: { type: 'string', format: 'binary', contentMediaType: 'image/jpeg' } },
        'image/webp': { schema: { type: 'string', format: 'binary', contentMediaType: 'image/webp' } },
      },
    };
    return;
  }
  if (!json) return;
  if (route.endsWith('/score') && ex.lm) {
    json.example = { text: 'The jury said it did find that the city was well run.' };
  } else if (route.endsWith('/predict') && ex.tensor) {
    const vocab = ex.tensor.vocab?.length ?? 50;
    json.example = { inputs: Object.fromEntries(modelInputs(ex.tensor.manifest).map((s) => { const t = exampleTensor(s, vocab); return [s.name, nest(t.data, t.shape)]; })) };
  } else if (route.endsWith('/infer') && ex.tensor) {
    const vocab = ex.tensor.vocab?.length ?? 50;
    json.example = {
      id: 'example-1',
      inputs: modelInputs(ex.tensor.manifest).map((s) => {
        const t = exampleTensor(s, vocab);
        return { name: s.name, datatype: s.dtype === 'int64' ? 'INT64' : 'FP32', shape: [1, ...t.shape], data: t.data };
      }),
    };
    // The binary tensor extension: Inference-Header-Content-Length bytes of JSON, then the raw tensors.
    op.requestBody.content['application/octet-stream'] = {
      schema: { type: 'string', format: 'binary', description: 'binary tensor extension: the JSON header (its length in Inference-Header-Content-Length), then each input\'s raw little-endian bytes in order' },
    };
    op.parameters = [...(op.parameters ?? []), {
      name: 'Inference-Header-Content-Length', in: 'header', required: false,
      description: 'binary tensor extension: byte length of the JSON header at the start of the body',
      schema: { type: 'integer', minimum: 0 },
    }];
    op.responses['200'].content['application/octet-stream'] = { schema: { type: 'string', format: 'binary', description: 'when outputs ask for binary_data: the JSON header, then the raw output tensors' } };
  }
}

function operationId(method: string, path: string): string {
  const words = path.split('/').filter(Boolean).map((w) => w.replace(/[{}]/g, ''));
  return method + words.map((w) => w.charAt(0).toUpperCase() + w.slice(1).replace(/[^a-zA-Z0-9]/g, '')).join('');
}
