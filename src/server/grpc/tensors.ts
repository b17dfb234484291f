// ModelInferRequest → V2Request and V2Response → ModelInferResponse, as @grpc/proto-loader
// presents the messages (keepCase, int64 as decimal strings, oneofs named). Inputs arrive as
// typed `contents` or as `raw_input_contents` (little-endian bytes, one entry per input);
// outputs go back the way the inputs came: raw in, raw out (what tritonclient reads), typed
// in, typed out (what grpcurl and hand-written clients read).
import { DeqError, quote } from '../../errors.js';
import { tensorBytes } from '../v2-binary.js';
import type { V2Input, V2Request, V2Response, V2Scalar } from '../v2-infer.js';

/** InferParameter: one of its fields is set, named by `parameter_choice`. */
export interface InferParameter {
  parameter_choice?: 'bool_param' | 'int64_param' | 'string_param' | 'double_param' | 'uint64_param';
  bool_param?: boolean;
  int64_param?: string;
  string_param?: string;
  double_param?: number;
  uint64_param?: string;
}

/** InferTensorContents, each a repeated field (empty when unused). */
export interface TensorContents {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: string[];
  uint_contents?: number[];
  uint64_contents?: string[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Buffer[];
}

export interface InferInputTensor {
  name: string;
  datatype: string;
  shape: string[];
  parameters?: Record<string, InferParameter>;
  contents?: TensorContents | null;
}

export interface ModelInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  parameters?: Record<string, InferParameter>;
  inputs: InferInputTensor[];
  outputs: { name: string; parameters?: Record<string, InferParameter> }[];
  raw_input_contents: Buffer[];
}

/** The contents field each datatype travels in (the proto's comments). */
const CONTENTS_FIELD: Readonly<Record<string, keyof TensorContents>> = Object.freeze({
  BOOL: 'bool_contents', INT8: 'int_contents', INT16: 'int_contents', INT32: 'int_contents', INT64: 'int64_contents',
  UINT8: 'uint_contents', UINT16: 'uint_contents', UINT32: 'uint_contents', UINT64: 'uint64_contents',
  FP32: 'fp32_contents', FP64: 'fp64_contents', BYTES: 'bytes_contents',
});

/** A protocol parameter's value; int64 beyond 2^53 stays a string. */
export function parameterValue(p: InferParameter): V2Scalar | undefined {
  switch (p.parameter_choice) {
    case 'bool_param': return p.bool_param;
    case 'string_param': return p.string_param;
    case 'double_param': return p.double_param;
    case 'int64_param':
    case 'uint64_param': {
      const s = p[p.parameter_choice]!;
      const n = Number(s);
      return Number.isSafeInteger(n) ? n : s;
    }
    default: return undefined;
  }
}

function parameters(map: Record<string, InferParameter> | undefined): Record<string, V2Scalar> | undefined {
  if (!map) return undefined;
  const keys = Object.keys(map);
  if (keys.length === 0) return undefined;
  const out: Record<string, V2Scalar> = {};
  for (const k of keys) {
    const v = parameterValue(map[k]);
    if (v === undefined) throw invalid(`parameter ${quote(k)} has no value`);
    out[k] = v;
  }
  return out;
}

/**
 * The request in the REST body's form (checked afterwards against the same JSON Schema).
 * Typed FP32/INT64 data becomes Float32Array/BigInt64Array; other datatypes keep their
 * numbers, so the model's datatype check names the mismatch as over REST.
 */
export function fromInferRequest(r: ModelInferRequest): { body: V2Request; raw: boolean } {
  const raw = r.raw_input_contents.length > 0;
  if (raw && r.raw_input_contents.length !== r.inputs.length) {
    throw invalid(`raw_input_contents has ${r.raw_input_contents.length} entries for ${r.inputs.length} inputs; send every input raw, or none`);
  }
  const inputs: V2Input[] = r.inputs.map((t, i) => {
    const shape = t.shape.map(Number);
    const input: V2Input = { name: t.name, datatype: t.datatype, shape, data: undefined };
    const p = parameters(t.parameters);
    if (p) input.parameters = p;
    input.data = raw ? rawData(t, shape, r.raw_input_contents[i]) : typedData(t);
    return input;
  });
  const body: V2Request = { inputs };
  if (r.id !== '') body.id = r.id;
  const p = parameters(r.parameters);
  if (p) body.parameters = p;
  if (r.outputs.length > 0) body.outputs = r.outputs.map((o) => ({ name: o.name, ...(parameters(o.parameters) ? { parameters: parameters(o.parameters) } : {}) }));
  return { body, raw };
}

function typedData(t: InferInputTensor): unknown {
  const c = t.contents ?? {};
  const used = (Object.keys(c) as (keyof TensorContents)[]).filter((k) => (c[k]?.length ?? 0) > 0);
  const field = CONTENTS_FIELD[t.datatype];
  if (!field) throw invalid(`input ${t.name}: unknown datatype ${quote(t.datatype)}`);
  if (used.length > 1) throw invalid(`input ${t.name} sets ${used.join(' and ')}; a tensor's data is in one contents field`);
  if (used.length === 1 && used[0] !== field) throw invalid(`input ${t.name} has datatype ${t.datatype}, whose data goes in contents.${field} (got contents.${used[0]})`);
  const values = c[field] ?? [];
  if (t.datatype === 'FP32') return Float32Array.from(values as number[]);
  if (t.datatype === 'INT64') return BigInt64Array.from(values as string[], (s) => BigInt(s));
  if (t.datatype === 'BYTES') return (values as Buffer[]).map((b) => b.toString('utf8'));
  if (field === 'uint64_contents') return (values as string[]).map(Number);
  return Array.from(values as number[]);
}

/** Bytes per element of the datatypes whose raw bytes the models take. */
const RAW_WIDTH: Readonly<Record<string, number>> = Object.freeze({ FP32: 4, INT64: 8 });

function rawData(t: InferInputTensor, shape: number[], bytes: Buffer): Float32Array | BigInt64Array {
  const width = RAW_WIDTH[t.datatype];
  if (!width) throw invalid(`input ${t.name}: datatype ${quote(t.datatype)} is not served (FP32, INT64)`);
  const count = shape.reduce((a, b) => a * b, 1);
  if (bytes.length !== count * width) {
    throw invalid(`input ${t.name}: raw_input_contents holds ${bytes.length} bytes; shape [${shape.join(', ')}] of ${t.datatype} needs ${count * width}`);
  }
  // Copied: the message buffer is not kept, and a typed array needs an aligned offset.
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return width === 4 ? new Float32Array(copy.buffer) : new BigInt64Array(copy.buffer);
}

/** Parameters that are real numbers whatever their value (a queue time of 0 ms stays a double). */
const DOUBLE_PARAMS = new Set(['tol', 'residual', 'queue_ms', 'solve_ms', 'prediction_tol', 'prediction_margin']);

function inferParameter(key: string, v: V2Scalar): InferParameter {
  if (typeof v === 'boolean') return { bool_param: v };
  if (typeof v === 'string') return { string_param: v };
  if (Number.isSafeInteger(v) && !DOUBLE_PARAMS.has(key)) return { int64_param: String(v) };
  return { double_param: v };
}

/** The response message; `raw`: outputs in raw_output_contents, else in typed contents. */
export function toInferResponse(r: V2Response, raw: boolean) {
  const outputs = r.outputs.map((t) => ({
    name: t.name, datatype: t.datatype, shape: t.shape.map(String),
    ...(raw ? {} : { contents: contents(t.datatype, t.data) }),
  }));
  return {
    model_name: r.model_name,
    model_version: r.model_version,
    id: r.id ?? '',
    parameters: Object.fromEntries(Object.entries(r.parameters).map(([k, v]) => [k, inferParameter(k, v)])),
    outputs,
    raw_output_contents: raw ? r.outputs.map((t) => tensorBytes(t.datatype, t.data)) : [],
  };
}

function contents(datatype: string, data: V2Response['outputs'][number]['data']): TensorContents {
  if (Array.isArray(data)) return { bytes_contents: data.map((s) => Buffer.from(s, 'utf8')) };
  if (datatype === 'BOOL') return { bool_contents: Array.from(data as Uint8Array, (b) => b === 1) };
  if (data instanceof BigInt64Array) return { int64_contents: Array.from(data, String) };
  // protobufjs takes plain arrays only (fromObject refuses a Float32Array).
  return { fp32_contents: Array.from(data as Float32Array) };
}

function invalid(message: string): DeqError {
  return new DeqError('DEQ_ERR_INVALID_INPUT', message);
}
