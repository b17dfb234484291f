import type { FastifyPluginAsync } from 'fastify';
import { DeqError, quote } from '../../errors.js';
import type { TensorSpec } from '../../runtime/index.js';
import { findModel, type ServedModel } from '../models.js';
import { elementCount, jsonTensorStream } from '../json-stream.js';
import { runSolve } from '../solve.js';
import { requestControl, solverParamsSchema, type WireSolverOptions } from '../solver-options.js';
import type { ServerConfig } from '../config.js';
import { isReady, type ServerState } from '../state.js';

const V2_DATATYPE = { float32: 'FP32', int64: 'INT64' } as const;

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
    parameters: { ...PARAMS_SCHEMA, properties: solverParamsSchema(config) },
    inputs: {
      type: 'array', minItems: 1, maxItems: 16,
      items: {
        type: 'object',
        required: ['name', 'shape', 'datatype', 'data'],
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
  app.get('/v2', async () => ({ name: 'deq-serve', version: process.env.npm_package_version ?? '0.1.0', extensions: [] }));

  app.get<{ Params: { name: string } }>('/v2/models/:name', { schema: { response: { 200: MODEL_METADATA } } }, async (req) => {
    const m = findModel(state.models, req.params.name);
    return {
      name: m.name,
      versions: [m.manifest.version ?? '1'],
      platform: 'deq-onnx',
      inputs: modelInputs(m).map(meta),
      outputs: m.manifest.graphs.head.outputs.map(meta),
    };
  });

  // A health route (docs/server.md, --open-health): no key needed when health is open.
  app.get<{ Params: { name: string } }>('/v2/models/:name/ready', { config: { open: true } }, async (req, reply) => {
    findModel(state.models, req.params.name);
    const ready = isReady(state);
    return reply.code(ready ? 200 : 503).send({ name: req.params.name, ready });
  });

  app.post<{ Params: { name: string }; Body: V2InferBody }>('/v2/models/:name/infer', {
    schema: { body: inferBody(state.config), response: { 200: INFER_RESPONSE } },
  }, async (req, reply) => {
    const m = findModel(state.models, req.params.name);
    const body = req.body;
    const control = requestControl(m, body.parameters ?? {}, state.config);
    const specs = modelInputs(m);
    const given = new Map<string, V2Tensor>();
    for (const t of body.inputs) {
      if (given.has(t.name)) throw invalid(`input ${t.name} appears twice`);
      if (!specs.some((s) => s.name === t.name)) throw invalid(`unknown input ${quote(t.name)}; ${m.name} takes ${specs.map((s) => s.name).join(', ')}`);
      given.set(t.name, t);
    }
    let batch = -1;
    let length: number | undefined;
    const arrays = new Map<string, Float32Array | BigInt64Array>();
    for (const spec of specs) {
      const t = given.get(spec.name);
      if (!t) throw invalid(`missing input ${spec.name}`);
      const want = V2_DATATYPE[spec.dtype];
      if (t.datatype !== want) throw invalid(`input ${spec.name} must have datatype ${want} (got ${quote(String(t.datatype))})`);
      const shape = t.shape;
      if (shape.length !== spec.shape.length + 1) throw invalid(`input ${spec.name} must have shape [batch, ${spec.shape.join(', ')}] (got [${shape.join(', ')}])`);
      if (batch === -1) batch = shape[0];
      if (shape[0] !== batch) throw invalid(`every input needs the same batch size (${batch}); ${spec.name} has ${shape[0]}`);
      for (let d = 0; d < spec.shape.length; d++) {
        const expect = spec.shape[d];
        if (expect === -1) {
          if (length === undefined) length = shape[d + 1];
          if (shape[d + 1] !== length || length < 1) throw invalid(`input ${spec.name} dim ${d + 1} must be the sequence length (${length}), ≥ 1`);
        } else if (shape[d + 1] !== expect) {
          throw invalid(`input ${spec.name} must have shape [batch, ${spec.shape.join(', ')}] (got [${shape.join(', ')}])`);
        }
      }
      const count = shape.reduce((a, b) => a * b, 1);
      arrays.set(spec.name, toTyped(spec, t.data, count, m));
    }
    if (batch < 1 || batch > state.config.maxBatch) throw invalid(`batch size must be in [1, ${state.config.maxBatch}] (got ${batch})`);
    if (length !== undefined && m.manifest.tokenizer && length > m.manifest.tokenizer.context) {
      throw invalid(`sequence length must be ≤ the model context ${m.manifest.tokenizer.context} (got ${length})`);
    }
    const headNames = m.manifest.graphs.head.outputs.map((o) => o.name);
    const wanted = body.outputs?.map((o) => o.name) ?? Object.values(m.manifest.outputs);
    for (const name of wanted) if (!headNames.includes(name)) throw invalid(`unknown output ${quote(name)}; ${m.name} has ${headNames.join(', ')}`);
    checkOutputSize(m, wanted, batch, length, state.config.maxOutputElements);

    const injectName = m.manifest.graphs.inject.inputs[0].name;
    const headInputs: Record<string, Float32Array | BigInt64Array> = {};
    for (const h of m.manifest.graphs.head.inputs.slice(1)) headInputs[h.name] = arrays.get(h.name)!;
    const result = await runSolve(req, m, {
      input: arrays.get(injectName)!, batch, length, headInputs, outputs: wanted,
      solver: control.solver, deadline: control.deadline,
    });
    if (state.config.onDeadline === 'error' && Date.now() > control.deadline) {
      throw new DeqError('DEQ_ERR_DEADLINE_EXCEEDED', `the deadline passed after the solve (queue ${Math.round(result.queueMs)} ms, worker ${Math.round(result.timing.totalMs)} ms), before the response was written`);
    }
    const s = result.solver;
    const head = {
      model_name: m.name,
      model_version: m.manifest.version ?? '1',
      ...(body.id !== undefined ? { id: body.id } : {}),
      parameters: {
        solver: result.options.method, tol: result.options.tol, max_iter: result.options.maxIter, stop_mode: result.options.stopMode,
        iterations: Array.from(s.iterations),
        residual: Array.from(s.residual, (r) => (Number.isFinite(r) ? r : null)),
        converged: Array.from(s.converged, (c) => c === 1),
        diverged: Array.from(s.diverged, (c) => c === 1),
        all_converged: s.converged.every((c) => c === 1),
        deadline_exceeded: s.stopped,
        queue_ms: result.queueMs, solve_ms: result.timing.solveMs,
      },
    };
    // Streamed in chunks: a large tensor never holds the event loop (docs/reliability.md).
    const outputs = wanted.map((name) => {
      const t = result.outputs[name];
      return { name, datatype: V2_DATATYPE[t.type], shape: t.dims, data: t.data };
    });
    return reply.type('application/json; charset=utf-8').send(jsonTensorStream(head, outputs));
  });
};

/** The tensors a v2 request supplies: the inject input, then the head's extra inputs (LM targets). */
function modelInputs(m: ServedModel): TensorSpec[] {
  return [m.manifest.graphs.inject.inputs[0], ...m.manifest.graphs.head.inputs.slice(1)];
}

function meta(t: TensorSpec) {
  return { name: t.name, datatype: V2_DATATYPE[t.dtype], shape: [-1, ...t.shape] };
}

/** Refuses, before any solving, a request whose outputs would exceed the response cap. */
function checkOutputSize(m: ServedModel, wanted: readonly string[], batch: number, length: number | undefined, cap: number): void {
  let total = 0;
  const parts: string[] = [];
  for (const name of wanted) {
    const spec = m.manifest.graphs.head.outputs.find((o) => o.name === name)!;
    const dims = [batch, ...spec.shape.map((d) => (d === -1 ? length ?? 1 : d))];
    total += elementCount(dims);
    parts.push(`${name} [${dims.join('×')}]`);
  }
  if (total > cap) {
    throw new DeqError('DEQ_ERR_OUTPUT_TOO_LARGE',
      `the requested outputs hold ${total} values (${parts.join(', ')}), over the ${cap}-value limit (--max-output-elements); ask for fewer outputs or a smaller batch`);
  }
}

function invalid(message: string): DeqError {
  return new DeqError('DEQ_ERR_INVALID_INPUT', message);
}

/** Flattens nested or flat row-major data, checking count, finiteness, and (int64) range. */
function toTyped(spec: TensorSpec, data: unknown, count: number, m: ServedModel): Float32Array | BigInt64Array {
  // Array.prototype.flat is slow on large flat arrays (32 ms for 65,536 numbers, measured); skip it when there is nothing to flatten.
  const flat = (data as unknown[]).some(Array.isArray) ? (data as unknown[]).flat(8) : data as unknown[];
  if (flat.length !== count) throw invalid(`input ${spec.name} has ${flat.length} values; its shape needs ${count}`);
  if (spec.dtype === 'float32') {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const v = flat[i];
      // 1e39 is finite as a double but Infinity in float32: the model would see Infinity.
      const f = typeof v === 'number' ? Math.fround(v) : NaN;
      if (!Number.isFinite(f)) throw invalid(`input ${spec.name}[${i}] must be a number that is finite in float32, |x| ≤ 3.4028235e38 (got ${JSON.stringify(v)?.slice(0, 20)})`);
      out[i] = f;
    }
    return out;
  }
  // Token ids index an embedding: out of range would fail inside ONNX Runtime.
  const limit = m.vocab?.length ?? Number.MAX_SAFE_INTEGER;
  const out = new BigInt64Array(count);
  for (let i = 0; i < count; i++) {
    const v = flat[i];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= limit) {
      throw invalid(`input ${spec.name}[${i}] must be an integer in [0, ${limit - 1}] (got ${JSON.stringify(v)?.slice(0, 20)})`);
    }
    out[i] = BigInt(v);
  }
  return out;
}
