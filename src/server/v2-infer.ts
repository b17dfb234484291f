// One Open Inference Protocol v2 inference, whatever carried it: the REST route and the
// gRPC service both parse their wire form into a V2Request, call inferV2, and write the
// V2Response back in their own form. Limits, solver settings, the output cap, sequences,
// the response cache and metrics are therefore the same over both.
import type { FastifyRequest } from 'fastify';
import { DeqError, quote } from '../errors.js';
import { stateInput, STATE_TENSOR, tensorInputs, V2_DATATYPE } from '../pipelines/tensor.js';
import { modelInputs, modelOutputs, resolveDims, type TensorSpec } from '../runtime/index.js';
import { STOP_REASONS } from '../solver/index.js';
import type { ServerConfig } from './config.js';
import { checkOutputSize, traceOutput } from './output-cap.js';
import { findModel, type ServedModel } from './models.js';
import type { PoolResult } from './pool.js';
import { runSequenced, SEQUENCE_PARAMS_SCHEMA, sequenceFlags, solverSummary } from './solve.js';
import { requestControl, solverParamsSchema, type WireSolverOptions } from './solver-options.js';

/** An input tensor: JSON numbers (flat or nested) or, from binary forms, a typed array. */
export interface V2Input {
  name: string;
  shape: number[];
  datatype: string;
  /** Absent only until the binary extension's bytes are attached (attachBinaryInputs). */
  data: unknown;
  parameters?: Record<string, unknown>;
}

export interface V2Request {
  id?: string;
  parameters?: WireSolverOptions & Record<string, unknown>;
  inputs: V2Input[];
  outputs?: { name: string; parameters?: Record<string, unknown> }[];
}

/** Tensor data as inferV2 returns it: FP32, INT64, BOOL (one byte each, 0 or 1) or BYTES (strings). */
export type V2Data = Float32Array | BigInt64Array | Uint8Array | string[];

export interface V2OutputTensor {
  name: string;
  datatype: 'FP32' | 'INT64' | 'BOOL' | 'BYTES';
  shape: number[];
  data: V2Data;
}

/** Parameter values the protocol allows (gRPC's InferParameter has no arrays or null). */
export type V2Scalar = string | number | boolean;

export interface V2Response {
  model_name: string;
  model_version: string;
  id?: string;
  parameters: Record<string, V2Scalar>;
  outputs: V2OutputTensor[];
}

/**
 * Outputs every model can return besides its own: per-sample solver figures, [batch]. They are
 * returned when named in `outputs` only (like deq_state), so a client that asks for nothing gets
 * the model's outputs, as the protocol says.
 */
export const SOLVER_OUTPUTS = Object.freeze({
  solver_iterations: { datatype: 'INT64', help: 'cell evaluations of each sample' },
  solver_residual: { datatype: 'FP32', help: 'residual of each sample\'s returned iterate, in the stop mode (null in JSON when not finite)' },
  solver_converged: { datatype: 'BOOL', help: 'whether each sample reached tol' },
  solver_diverged: { datatype: 'BOOL', help: 'whether each sample\'s residual blew up or became non-finite' },
  solver_stop_reason: { datatype: 'BYTES', help: `why each sample stopped (${[...new Set(STOP_REASONS)].join(', ')})` },
} as const);

/**
 * With parameters.trace = true (or when named): each sample's residual after every evaluation,
 * [batch, T], T the longest trace, shorter rows padded with NaN (null in JSON); and, for
 * classifiers, the top-1 of every iterate, padded with -1.
 */
export const TRACE_OUTPUTS = Object.freeze({
  solver_trace_residual: { datatype: 'FP32' },
  solver_trace_top1: { datatype: 'INT64' },
} as const);

type ExtraName = keyof typeof SOLVER_OUTPUTS | keyof typeof TRACE_OUTPUTS;
const EXTRA_NAMES = new Set<string>([...Object.keys(SOLVER_OUTPUTS), ...Object.keys(TRACE_OUTPUTS)]);

const PARAMS_SCHEMA = { type: 'object', additionalProperties: { type: ['string', 'number', 'boolean'] } } as const;

/**
 * JSON Schema of an infer request. Solver settings ride in `parameters` (typed, with the server
 * caps as ranges); other parameters are allowed, as the protocol lets clients send their own.
 * The gRPC service checks its requests, converted to this form, against the same schema.
 */
export const inferBodySchema = (config: Readonly<ServerConfig>) => ({
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

/** What a request needs from its carrier: fastify's request over REST, an adapter over gRPC (grpc/call-context.ts). */
export type SolveRequest = FastifyRequest;

/**
 * Runs one v2 inference: checks the tensors against the model, resolves the solver settings,
 * applies the output cap before solving, solves (sequences, cache, metrics via runSequenced),
 * and returns the requested outputs with scalar parameters.
 */
export async function inferV2(req: SolveRequest, m: ServedModel, body: V2Request, config: Readonly<ServerConfig>, deadlineCap = Infinity): Promise<V2Response> {
  const named = body.outputs?.map((o) => o.name);
  const wantsTrace = named?.some((n) => n in TRACE_OUTPUTS) === true;
  const params = wantsTrace ? { ...body.parameters, trace: true } : body.parameters ?? {};
  const control = requestControl(m, params, config);
  control.deadline = Math.min(control.deadline, deadlineCap);
  // Input deq_state: a warm start (the solve's z₀); output deq_state, or parameters.return_state: z*.
  const stateIn = body.inputs.find((t) => t.name === STATE_TENSOR);
  const { inputs, batch, length } = tensorInputs(m.manifest, body.inputs.filter((t) => t !== stateIn), {
    maxBatch: config.maxBatch, vocabSize: m.vocab?.length, context: m.manifest.tokenizer?.context,
  });
  const z0 = stateIn && stateInput(m.manifest, stateIn, batch, length);
  const headNames = modelOutputs(m.manifest).map((o) => o.name);
  const returnState = body.parameters?.return_state === true || named?.includes(STATE_TENSOR) === true;
  const extras = (named?.filter((n) => EXTRA_NAMES.has(n)) ?? (control.solver.trace ? Object.keys(TRACE_OUTPUTS) : [])) as ExtraName[];
  const wanted = named?.filter((n) => n !== STATE_TENSOR && !EXTRA_NAMES.has(n)) ?? headNames;
  for (const name of wanted) if (!headNames.includes(name)) throw invalid(`unknown output ${quote(name)}; ${m.name} has ${[...headNames, STATE_TENSOR, ...EXTRA_NAMES].join(', ')}`);
  if (named && new Set(named).size !== named.length) throw invalid('an output is named twice in `outputs`');
  // deq_state and the trace count too: every route's answer is held to the cap (output-cap.ts)
  const extraDims = [
    ...(returnState ? [{ name: STATE_TENSOR, dims: [batch, ...resolveDims(m.manifest.state.shape, length)] }] : []),
    ...traceOutput(control.solver.trace, batch, control.solver.maxIter),
  ];
  checkOutputSize(m, wanted, batch, length, config.maxOutputElements, extraDims, named === undefined);

  const result = await runSequenced(req, m, {
    inputs, batch, length, outputs: wanted.length > 0 ? wanted : [headNames[0]],
    solver: control.solver, deadline: control.deadline, z0, returnState,
  }, sequenceFlags(body.parameters as Parameters<typeof sequenceFlags>[0]));
  if (config.onDeadline === 'error' && Date.now() > control.deadline) {
    throw new DeqError('DEQ_ERR_DEADLINE_EXCEEDED', `the deadline passed after the solve (queue ${Math.round(result.queueMs)} ms, worker ${Math.round(result.timing.totalMs)} ms), before the response was written`);
  }
  const order = named ?? [...wanted, ...(returnState ? [STATE_TENSOR] : []), ...extras];
  const outputs: V2OutputTensor[] = [];
  for (const name of order) {
    if (EXTRA_NAMES.has(name)) {
      const t = extraOutput(name as ExtraName, result, batch);
      if (t) outputs.push(t);
      continue;
    }
    const t = name === STATE_TENSOR ? result.state! : result.outputs[name];
    outputs.push({ name, datatype: V2_DATATYPE[t.type], shape: t.dims, data: t.data });
  }
  return {
    model_name: m.name,
    model_version: m.manifest.version ?? '1',
    ...(body.id !== undefined ? { id: body.id } : {}),
    parameters: scalarParameters(result),
    outputs,
  };
}

/** The solve's summary as scalar parameters: the worst sample's figures; per-sample ones are the solver_* outputs. */
function scalarParameters(result: PoolResult): Record<string, V2Scalar> {
  const summary = solverSummary(result);
  const p: Record<string, V2Scalar> = {
    solver: result.options.method, tol: result.options.tol, max_iter: result.options.maxIter, stop_mode: summary.stop_mode,
    iterations: summary.iterations,
    converged: summary.converged,
    all_converged: summary.converged,
    diverged: summary.diverged,
    deadline_exceeded: summary.deadline_exceeded,
    queue_ms: result.queueMs, solve_ms: result.timing.solveMs,
  };
  // Not finite (a diverged sample): left out, as a parameter cannot be null; diverged says why.
  if (summary.residual !== null) p.residual = summary.residual;
  if (summary.patience !== undefined) Object.assign(p, { patience: summary.patience, prediction_tol: summary.prediction_tol!, prediction_margin: summary.prediction_margin! });
  if (summary.warm_start) p.warm_start = true;
  if (summary.cached) p.cached = true;
  return p;
}

function extraOutput(name: ExtraName, r: PoolResult, batch: number): V2OutputTensor | undefined {
  const s = r.solver;
  switch (name) {
    case 'solver_iterations': return { name, datatype: 'INT64', shape: [batch], data: BigInt64Array.from(s.iterations, (n) => BigInt(n)) };
    case 'solver_residual': return { name, datatype: 'FP32', shape: [batch], data: Float32Array.from(s.residual) };
    case 'solver_converged': return { name, datatype: 'BOOL', shape: [batch], data: Uint8Array.from(s.converged, (c) => (c === 1 ? 1 : 0)) };
    case 'solver_diverged': return { name, datatype: 'BOOL', shape: [batch], data: Uint8Array.from(s.diverged, (c) => (c === 1 ? 1 : 0)) };
    case 'solver_stop_reason': return { name, datatype: 'BYTES', shape: [batch], data: Array.from(s.end, (e) => STOP_REASONS[e] ?? 'deadline') };
    case 'solver_trace_residual':
    case 'solver_trace_top1': {
      const rows = name === 'solver_trace_residual' ? s.trace : s.traceLabels;
      // A cached answer has no trace (traced solves are never cached); top-1 exists for classifiers only.
      if (!rows) return undefined;
      const width = rows.reduce((w, t) => Math.max(w, t.length), 0);
      const data = name === 'solver_trace_residual' ? new Float32Array(batch * width).fill(NaN) : new BigInt64Array(batch * width).fill(-1n);
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i];
        for (let j = 0; j < row.length; j++) {
          if (data instanceof Float32Array) data[i * width + j] = row[j];
          else data[i * width + j] = BigInt(row[j]);
        }
      }
      return { name, datatype: name === 'solver_trace_residual' ? 'FP32' : 'INT64', shape: [batch, width], data };
    }
  }
}

/** Server metadata (GET /v2, ServerMetadata): the extensions as Triton names them; model_repository with --model-control. */
export function serverMetadata(config: Readonly<ServerConfig>) {
  return {
    name: 'deq-serve',
    version: process.env.npm_package_version ?? '0.1.0',
    extensions: ['binary_tensor_data', ...(config.modelControl !== 'none' ? ['model_repository', 'model_repository(unload_dependents)'] : [])],
  };
}

/** A tensor's metadata entry: the batch dim and symbolic dims as -1. */
function meta(t: TensorSpec) {
  return { name: t.name, datatype: V2_DATATYPE[t.dtype], shape: [-1, ...t.shape] };
}

/** Model metadata, the same over REST and gRPC. */
export function modelMetadata(m: ServedModel) {
  return {
    name: m.name,
    versions: [m.manifest.version ?? '1'],
    // The protocol's <framework>_<format> form, from its list of platforms; informational.
    platform: 'onnx_onnxv1',
    inputs: modelInputs(m.manifest).map(meta),
    outputs: modelOutputs(m.manifest).map(meta),
  };
}

/** The model, checked against the requested version when the route or RPC names one (gRPC: '' is none). */
export function findV2Model(models: ReadonlyMap<string, ServedModel>, name: string, version?: string): ServedModel {
  const m = findModel(models, name);
  const have = m.manifest.version ?? '1';
  if (version !== undefined && version !== '' && version !== have) {
    throw new DeqError('DEQ_ERR_MODEL_NOT_FOUND', `model ${m.name} has no version ${quote(version)}; it serves version ${quote(have)}`);
  }
  return m;
}

function invalid(message: string): DeqError {
  return new DeqError('DEQ_ERR_INVALID_INPUT', message);
}
