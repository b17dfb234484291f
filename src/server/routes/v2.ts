import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { DeqError, quote } from '../../errors.js';
import type { ServedModel } from '../models.js';
import { jsonTensorStream } from '../json-stream.js';
import { isReady, type ServerState } from '../state.js';
import { parseJsonBody } from '../json-body.js';
import { attachBinaryInputs, encodeBinaryResponse, HEADER_LENGTH, splitBody, tensorBytes } from '../v2-binary.js';
import { findV2Model, inferBodySchema, inferV2, modelMetadata, serverMetadata, type V2Request } from '../v2-infer.js';

const TENSOR_META = { type: 'object', properties: { name: { type: 'string' }, datatype: { type: 'string' }, shape: { type: 'array', items: { type: 'integer' } } } } as const;

const MODEL_METADATA = {
  type: 'object',
  properties: {
    name: { type: 'string' }, versions: { type: 'array', items: { type: 'string' } }, platform: { type: 'string' },
    inputs: { type: 'array', items: TENSOR_META }, outputs: { type: 'array', items: TENSOR_META },
  },
} as const;

const MODEL_READY = { type: 'object', properties: { name: { type: 'string' }, ready: { type: 'boolean' } } } as const;

const INFER_RESPONSE = {
  type: 'object',
  properties: {
    model_name: { type: 'string' },
    model_version: { type: 'string' },
    id: { type: 'string' },
    // Scalars only (the protocol's parameter values; gRPC's InferParameter): the worst sample's
    // figures. Per-sample figures are the solver_* outputs (v2-infer.ts, SOLVER_OUTPUTS).
    parameters: { type: 'object', additionalProperties: { type: ['string', 'number', 'boolean'] } },
    outputs: {
      type: 'array',
      items: { type: 'object', properties: { name: { type: 'string' }, datatype: { type: 'string' }, shape: { type: 'array', items: { type: 'integer' } }, data: { type: 'array', items: { type: ['number', 'boolean', 'string', 'null'] } } } },
    },
  },
} as const;

/** Open Inference Protocol v2 (KServe / Triton REST): metadata, readiness, JSON-tensor inference. */
export const v2Routes: FastifyPluginAsync<{ state: ServerState }> = async (app, { state }) => {
  // The spec's path is /v2/ (its OpenAPI file); /v2 is what Triton and most clients call.
  const metadata = serverMetadata(state.config);
  app.get('/v2', async () => metadata);
  app.get('/v2/', async () => metadata);

  // Binary tensor data extension: with Inference-Header-Content-Length, the body is that many
  // bytes of JSON, then the binary inputs; the JSON is parsed by fastify's own parser (with
  // its prototype-poisoning checks) and the tail kept for the handler.
  const tails = new WeakMap<FastifyRequest, Buffer>();
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  const parseBody = (binaryOnly: boolean) => (req: FastifyRequest, body: Buffer, done: (err: Error | null, body?: unknown) => void) => {
    let parts: ReturnType<typeof splitBody>;
    try {
      parts = splitBody(body, req.headers[HEADER_LENGTH]);
      // No Content-Type at all is JSON: tritonclient's HTTP client sends its all-JSON requests so, and Triton takes them.
      if (!parts && binaryOnly && req.headers['content-type'] !== undefined) {
        const type = quote(req.headers['content-type'] ?? '', 60);
        throw new DeqError('DEQ_ERR_UNSUPPORTED_MEDIA_TYPE', `send Content-Type: application/json, or the binary tensor form with an Inference-Header-Content-Length header (got ${type})`);
      }
    } catch (err) {
      done(err as Error);
      return;
    }
    if (parts) tails.set(req, parts.tail);
    const what = parts ? `the JSON header (the first ${parts.json.length} bytes, Inference-Header-Content-Length)` : 'the JSON body';
    parseJsonBody(req, parts?.json ?? body, done, { maxDepth: state.config.maxJsonDepth, parser: jsonParser, what });
  };
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, parseBody(false));
  // Clients send the binary form as application/octet-stream, or with no Content-Type at all
  // (tritonclient's HTTP client sets only Inference-Header-Content-Length): any non-JSON type.
  app.addContentTypeParser('*', { parseAs: 'buffer' }, parseBody(true));

  // Every model route also answers under /versions/{version} (the protocol's optional
  // segment): each is registered a second time there, with the same handler and schemas.
  // findVersion answers a version the bundle does not have with a 404 in the v2 shape.
  // (HEAD routes are left to fastify, which adds one for each GET, the versioned ones too.)
  app.addHook('onRoute', (route) => {
    if (route.method === 'HEAD' || !route.url.startsWith(MODEL_ROUTE) || route.url.startsWith(VERSIONED_ROUTE)) return;
    // the same options (schemas, limits, route hooks) under the versioned path
    app.route({ ...route, url: VERSIONED_ROUTE + route.url.slice(MODEL_ROUTE.length) });
  });

  app.get<{ Params: ModelParams }>('/v2/models/:name', { schema: { response: { 200: MODEL_METADATA } } }, async (req) => modelMetadata(findVersion(state, req.params)));

  // A health route (docs/server.md, --open-health): no key needed when health is open.
  app.get<{ Params: ModelParams }>('/v2/models/:name/ready', { config: { open: true }, schema: { response: { 200: MODEL_READY, 503: MODEL_READY } } }, async (req, reply) => {
    findVersion(state, req.params);
    const ready = isReady(state);
    return reply.code(ready ? 200 : 503).send({ name: req.params.name, ready });
  });

  app.post<{ Params: ModelParams; Body: V2Request }>('/v2/models/:name/infer', {
    schema: { body: inferBodySchema(state.config), response: { 200: INFER_RESPONSE } },
  }, async (req, reply) => {
    const m = findVersion(state, req.params);
    const body = req.body;
    attachBinaryInputs(body.inputs, tails.get(req));
    const response = await inferV2(req, m, body, state.config);
    const allBinary = body.parameters?.binary_data_output === true;
    const binaryOut = new Set((body.outputs ?? []).filter((o) => o.parameters?.binary_data === true).map((o) => o.name));
    // JSON tensors are streamed in chunks: a large one never holds the event loop (docs/reliability.md).
    if (!allBinary && binaryOut.size === 0) {
      const { outputs, ...rest } = response;
      return reply.type('application/json; charset=utf-8').send(jsonTensorStream(rest, outputs));
    }
    const binaries: Buffer[] = [];
    const outputs = response.outputs.map(({ data, ...meta }) => {
      if (!allBinary && !binaryOut.has(meta.name)) return { ...meta, data: data instanceof Uint8Array ? Array.from(data, (b) => b === 1) : Array.isArray(data) ? data : Array.from(data as Float32Array, jsonNumber) };
      const bytes = tensorBytes(meta.datatype, data);
      binaries.push(bytes);
      return { ...meta, parameters: { binary_data_size: bytes.length } };
    });
    const { body: bytes, headerLength } = encodeBinaryResponse({ ...response, outputs }, binaries);
    return reply.header('Inference-Header-Content-Length', headerLength).type('application/octet-stream').send(bytes);
  });
};

/** A JSON number, or null where it is not finite (as jsonTensorStream writes it). */
function jsonNumber(v: number | bigint): number | null {
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

const MODEL_ROUTE = '/v2/models/:name';
const VERSIONED_ROUTE = '/v2/models/:name/versions/:version';

interface ModelParams {
  name: string;
  version?: string;
}

function findVersion(state: ServerState, p: ModelParams): ServedModel {
  return findV2Model(state.models, p.name, p.version);
}
