import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { DeqError, quote } from '../../errors.js';
import { stateInput, STATE_TENSOR, tensorInputs, V2_DATATYPE } from '../../pipelines/tensor.js';
import { modelInputs, modelOutputs, resolveDims, type TensorSpec } from '../../runtime/index.js';
import { findModel, type ServedModel } from '../models.js';
import { jsonTensorStream } from '../json-stream.js';
import { checkOutputSize, traceOutput } from '../output-cap.js';
import { runSequenced, SEQUENCE_PARAMS_SCHEMA, sequenceFlags, solverSummary, SOLVER_SUMMARY_SCHEMA } from '../solve.js';
import { requestControl, solverParamsSchema, type WireSolverOptions } from '../solver-options.js';
import type { ServerConfig } from '../config.js';
import { isReady, type ServerState } from '../state.js';
import { parseJsonBody } from '../json-body.js';
import { attachBinaryInputs, encodeBinaryResponse, HEADER_LENGTH, splitBody } from '../v2-binary.js';


interface V2Tensor {
  name: string;
  shape: number[];
  datatype: string;
  data: unknown;
  parameters?: Record<string, unknown>;
}

interface V2InferBody {
  id?: string;
  parameters?: WireSolverOptions & Record<string, unknown>;
  inputs: V2Tensor[];
  outputs?: { name: string; parameters?: Record<string, unknown> }[];
}

const PARAMS_SCHEMA = { type: 'object', additionalProperties: { type: ['string', 'number', 'boolean'] } } as const;

// Solver settings ride in the request `parameters` (typed, with the server caps as
// ranges); other parameters are allowed, as the protocol lets clients send their own.
const inferBody = (config: Readonly<ServerConfig>) => ({
  type: 'object',
  required: ['inputs'],
  properties: {
    id: { type: 'string', maxLength: 256 },
    parameters: { ...PARAMS_SCHEMA, properties: { ...solverParamsSchema(config), return_state: { type: 'boolean', description: 'true or false' }, ...SEQUENCE_PARAMS_SCHEMA } },
    inputs: {
      type: 'array', minItems: 1, maxItems: 16,
      items: {
        type: 'object',
        // data, or parameters.binary_data_size with the bytes after the JSON (binary extension)
        required: ['name', 'shape', 'datatype'],
        properties: {
          name: { type: 'string', maxLength: 128 },
          shape: { type: 'array', maxItems: 8, items: { type: 'integer', minimum: 0 } },
          datatype: { type: 'string' },
          parameters: PARAMS_SCHEMA,
          data: { type: 'array' },
        },
      },
    },
    outputs: { type: 'array', maxItems: 16, items: { type: 'object', required: ['name'], properties: { name: { type: 'string' }, parameters: PARAMS_SCHEMA } } },
  },
} as const);

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
    parameters: {
      type: 'object',
      properties: {
        solver: { type: 'string' }, tol: { type: 'number' }, max_iter: { type: 'integer' }, stop_mode: { type: 'string' },
        iterations: { type: 'array', items: { type: 'integer' } },
        residual: { type: 'array', items: { type: ['number', 'null'] } },
        converged: { type: 'array', items: { type: 'boolean' } },
        diverged: { type: 'array', items: { type: 'boolean' } },
        all_converged: { type: 'boolean' },
        deadline_exceeded: { type: 'boolean' },
        queue_ms: { type: 'number' }, solve_ms: { type: 'number' },
        patience: { type: 'integer' }, prediction_tol: { type: 'number' }, prediction_margin: { type: 'number' },
        stop_reason: SOLVER_SUMMARY_SCHEMA.properties.stop_reasons,
        warm_start: { type: 'boolean' },
        cached: { type: 'boolean' },
        trace: SOLVER_SUMMARY_SCHEMA.properties.trace,
      },
    },
    outputs: {
      type: 'array',
      items: { type: 'object', properties: { name: { type: 'string' }, datatype: { type: 'string' }, shape: { type: 'array', items: { type: 'integer' } }, data: { type: 'array', items: { type: 'number' } } } },
    },
  },
} as const;

/** Open Inference Protocol v2 (KServe / Triton REST): metadata, readiness, JSON-tensor inference. */
export const v2Routes: FastifyPluginAsync<{ state: ServerState }> = async (app, { state }) => {
  app.get('/v2', async () => ({ name: 'deq-serve', version: process.env.npm_package_version ?? '0.1.0', extensions: ['binary_tensor_data'] }));

  // Binary tensor data extension: with Inference-Header-Content-Length, the body is that many
  // bytes of JSON, then the binary inputs; the JSON is parsed by fastify's own parser (with
  // its prototype-poisoning checks) and the tail kept for the handler.
  const tails = new WeakMap<FastifyRequest, Buffer>();
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  const parseBody = (binaryOnly: boolean) => (req: FastifyRequest, body: Buffer, done: (err: Error | null, body?: unknown) => void) => {
    let parts: ReturnType<typeof splitBody>;
    try {
      parts = splitBody(body, req.headers[HEADER_LENGTH]);
      if (!parts && binaryOnly) {
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

  app.get<{ Params: ModelParams }>('/v2/models/:name', { schema: { response: { 200: MODEL_METADATA } } }, async (req) => {
    const m = findVersion(state, req.params);
    return {
      name: m.name,
      versions: [m.manifest.version ?? '1'],
      platform: 'deq-onnx',
      inputs: modelInputs(m.manifest).map(meta),
      outputs: modelOutputs(m.manifest).map(meta),
    };
  });

  // A health route (docs/server.md, --open-health): no key needed when health is open.
  app.get<{ Params: ModelParams }>('/v2/models/:name/ready', { config: { open: true }, schema: { response: { 200: MODEL_READY, 503: MODEL_READY } } }, async (req, reply) => {
    findVersion(state, req.params);
    const ready = isReady(state);
    return reply.code(ready ? 200 : 503).send({ name: req.params.name, ready });
  });

  app.post<{ Params: ModelParams; Body: V2InferBody }>('/v2/models/:name/infer', {
    schema: { body: inferBody(state.config), response: { 200: INFER_RESPONSE } },
  }, async (req, reply) => {
    const m = findVersion(state, req.params);
    const body = req.body;
    const control = requestControl(m, body.parameters ?? {}, state.config);
    attachBinaryInputs(body.inputs, tails.get(req));
    // Input deq_state: a warm start (the solve's z₀); output deq_state, or parameters.return_state: z*.
    const stateIn = body.inputs.find((t) => t.name === STATE_TENSOR);
    const { inputs, batch, length } = tensorInputs(m.manifest, body.inputs.filter((t) => t !== stateIn), {
      maxBatch: state.config.maxBatch, vocabSize: m.vocab?.length, context: m.manifest.tokenizer?.context,
    });
    const z0 = stateIn && stateInput(m.manifest, stateIn, batch, length);
    const headNames = modelOutputs(m.manifest).map((o) => o.name);
    const named = body.outputs?.map((o) => o.name);
    const returnState = body.parameters?.return_state === true || named?.includes(STATE_TENSOR) === true;
    const wanted = named?.filter((n) => n !== STATE_TENSOR) ?? Object.values(m.manifest.outputs);
    for (const name of wanted) if (!headNames.includes(name)) throw invalid(`unknown output ${quote(name)}; ${m.name} has ${headNames.join(', ')}, ${STATE_TENSOR}`);
    if (wanted.length === 0) throw invalid(`ask for at least one model output besides ${STATE_TENSOR} (${m.name} has ${headNames.join(', ')})`);
    checkOutputSize(m, wanted, batch, length, state.config.maxOutputElements, [...(returnState ? [{ name: STATE_TENSOR, dims: [batch, ...resolveDims(m.manifest.state.shape, length)] }] : []), ...traceOutput(control.solver.trace, batch, control.solver.maxIter)]);

    const result = await runSequenced(req, m, {
      inputs, batch, length, outputs: wanted,
      solver: control.solver, deadline: control.deadline, z0, returnState,
    }, sequenceFlags(body.parameters as Parameters<typeof sequenceFlags>[0]));
    if (state.config.onDeadline === 'error' && Date.now() > control.deadline) {
      throw new DeqError('DEQ_ERR_DEADLINE_EXCEEDED', `the deadline passed after the solve (queue ${Math.round(result.queueMs)} ms, worker ${Math.round(result.timing.totalMs)} ms), before the response was written`);
    }
    const s = result.solver;
    const summary = solverSummary(result);
    const allBinary = body.parameters?.binary_data_output === true;
    const binaryOut = new Set((body.outputs ?? []).filter((o) => o.parameters?.binary_data === true).map((o) => o.name));
    const binaries: (Float32Array | BigInt64Array)[] = [];
    const response = {
      model_name: m.name,
      model_version: m.manifest.version ?? '1',
      ...(body.id !== undefined ? { id: body.id } : {}),
      parameters: {
        solver: result.options.method, tol: result.options.tol, max_iter: result.options.maxIter, stop_mode: summary.stop_mode,
        iterations: Array.from(s.iterations),
        residual: Array.from(s.residual, (r) => (Number.isFinite(r) ? r : null)),
        converged: Array.from(s.converged, (c) => c === 1),
        diverged: Array.from(s.diverged, (c) => c === 1),
        all_converged: s.converged.every((c) => c === 1),
        deadline_exceeded: s.stopped,
        queue_ms: result.queueMs, solve_ms: result.timing.solveMs,
        ...(summary.patience !== undefined ? { patience: summary.patience, prediction_tol: summary.prediction_tol, prediction_margin: summary.prediction_margin } : {}),
        stop_reason: summary.stop_reasons,
        ...(summary.warm_start ? { warm_start: true } : {}),
        ...(summary.cached ? { cached: true } : {}),
        ...(summary.trace ? { trace: summary.trace } : {}),
      },
      outputs: [...wanted, ...(returnState ? [STATE_TENSOR] : [])].map((name) => {
        const t = name === STATE_TENSOR ? result.state! : result.outputs[name];
        const meta = { name, datatype: V2_DATATYPE[t.type], shape: t.dims };
        if (allBinary || binaryOut.has(name)) {
          binaries.push(t.data);
          return { ...meta, parameters: { binary_data_size: t.data.byteLength } };
        }
        return { ...meta, data: t.data };
      }),
    };
    // JSON tensors are streamed in chunks: a large one never holds the event loop (docs/reliability.md).
    if (binaries.length === 0) {
      const { outputs, ...rest } = response;
      return reply.type('application/json; charset=utf-8').send(jsonTensorStream(rest, outputs as { name: string; datatype: string; shape: number[]; data: Float32Array | BigInt64Array }[]));
    }
    const { body: bytes, headerLength } = encodeBinaryResponse(response, binaries);
    return reply.header('Inference-Header-Content-Length', headerLength).type('application/octet-stream').send(bytes);
  });
};

const MODEL_ROUTE = '/v2/models/:name';
const VERSIONED_ROUTE = '/v2/models/:name/versions/:version';

interface ModelParams {
  name: string;
  version?: string;
}

/** The model, checked against the requested version when the route names one. */
function findVersion(state: ServerState, p: ModelParams): ServedModel {
  const m = findModel(state.models, p.name);
  const have = m.manifest.version ?? '1';
  if (p.version !== undefined && p.version !== have) {
    throw new DeqError('DEQ_ERR_MODEL_NOT_FOUND', `model ${m.name} has no version ${quote(p.version)}; it serves version ${quote(have)}`);
  }
  return m;
}

function meta(t: TensorSpec) {
  return { name: t.name, datatype: V2_DATATYPE[t.dtype], shape: [-1, ...t.shape] };
}

function invalid(message: string): DeqError {
  return new DeqError('DEQ_ERR_INVALID_INPUT', message);
}

