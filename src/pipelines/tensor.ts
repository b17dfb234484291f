// The generic tensor pipeline: named float32/int64 tensors in (v2 infer, /predict),
// checked against the manifest's model inputs, and model outputs back as tensors.
import { DeqError, excerpt, quote } from '../errors.js';
import { DeqModel, modelInputs, resolveDims, type Manifest, type SessionConfig, type TensorSpec, type TensorValue } from '../runtime/index.js';
import type { SolverOptions } from '../solver/index.js';

/** One input tensor as a client sent it: row-major data (flat or nested), batch first. */
export interface ProvidedTensor {
  name: string;
  shape: number[];
  /** v2 datatype (FP32, INT64); absent on /predict, where the manifest's dtype applies. */
  datatype?: string;
  /** Flat or nested JSON numbers, or an already typed array (binary extension). */
  data: unknown;
}

/** What DeqModel.infer needs for a batch of named inputs. */
export interface TensorBatch {
  inputs: Record<string, Float32Array | BigInt64Array>;
  batch: number;
  /** The length of the symbolic (-1) dims, when the model has any. */
  length?: number;
}

export interface TensorLimits {
  maxBatch: number;
  /** Language models: token ids must index the vocabulary. */
  vocabSize?: number;
  /** Language models: the longest window. */
  context?: number;
}

export const V2_DATATYPE = { float32: 'FP32', int64: 'INT64' } as const;

/**
 * Checks the given tensors against the model's inputs (names, datatypes, shapes, one batch
 * size, one length for every symbolic dim) and converts them to typed arrays. Every error
 * is DEQ_ERR_INVALID_INPUT and names the tensor.
 */
export function tensorInputs(m: Manifest, given: readonly ProvidedTensor[], limits: TensorLimits): TensorBatch {
  const specs = modelInputs(m);
  const byName = new Map<string, ProvidedTensor>();
  for (const t of given) {
    if (byName.has(t.name)) throw invalid(`input ${t.name} appears twice`);
    if (!specs.some((s) => s.name === t.name)) throw invalid(`unknown input ${quote(t.name)}; ${m.name} takes ${specs.map((s) => s.name).join(', ')}`);
    byName.set(t.name, t);
  }
  let batch = -1;
  let length: number | undefined;
  const inputs: Record<string, Float32Array | BigInt64Array> = {};
  for (const spec of specs) {
    const t = byName.get(spec.name);
    if (!t) throw invalid(`missing input ${spec.name}`);
    if (t.datatype !== undefined && t.datatype !== V2_DATATYPE[spec.dtype]) {
      throw invalid(`input ${spec.name} must have datatype ${V2_DATATYPE[spec.dtype]} (got ${quote(String(t.datatype))})`);
    }
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
    inputs[spec.name] = toTyped(spec, t.data, count, limits.vocabSize);
  }
  if (batch < 1 || batch > limits.maxBatch) throw invalid(`batch size must be in [1, ${limits.maxBatch}] (got ${batch})`);
  if (length !== undefined && limits.context !== undefined && length > limits.context) {
    throw invalid(`sequence length must be ≤ the model context ${limits.context} (got ${length})`);
  }
  return { inputs, batch, length };
}

/**
 * The name a solver state travels under: v2's input (a warm start, z₀) and output (z*),
 * /predict's `initial_state` and `state`. Triton's implicit state, for a DEQ.
 */
export const STATE_TENSOR = 'deq_state';

/**
 * A client-supplied initial state z₀ for a batch: float32 (FP32), shape [batch, …state]
 * with the request's sequence length, finite. Anything else is DEQ_ERR_INVALID_INPUT (400).
 */
export function stateInput(m: Manifest, t: ProvidedTensor, batch: number, length: number | undefined): Float32Array {
  const dims = resolveDims(m.state.shape, length);
  if (t.datatype !== undefined && t.datatype !== 'FP32') throw invalid(`${STATE_TENSOR} must have datatype FP32 (got ${quote(String(t.datatype))})`);
  const want = [batch, ...dims];
  if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
    throw invalid(`${STATE_TENSOR} must have the shape of ${m.name}'s state for this batch, [${want.join(', ')}] (got [${t.shape.join(', ')}])`);
  }
  return toTyped({ name: STATE_TENSOR, dtype: 'float32', shape: dims }, t.data, want.reduce((a, b) => a * b, 1)) as Float32Array;
}

/**
 * The shape of a nested JSON array (rank = depth of the first elements), or an error if it is
 * ragged or deeper than `maxRank`. Scalars at the leaves are not checked here.
 */
export function nestedShape(name: string, data: unknown, maxRank: number): number[] {
  const shape: number[] = [];
  let cur: unknown = data;
  while (Array.isArray(cur)) {
    if (shape.length >= maxRank) throw invalid(`input ${name} is nested deeper than the model's ${maxRank} dims`);
    shape.push(cur.length);
    if (cur.length === 0) break;
    cur = cur[0];
  }
  checkRect(name, data, shape, 0);
  return shape;
}

function checkRect(name: string, v: unknown, shape: number[], d: number): void {
  if (d === shape.length) {
    if (Array.isArray(v)) throw invalid(`input ${name} is ragged: expected a number at depth ${d}`);
    return;
  }
  if (!Array.isArray(v) || v.length !== shape[d]) throw invalid(`input ${name} is ragged: every list at depth ${d} needs ${shape[d]} entries`);
  for (const x of v) checkRect(name, x, shape, d + 1);
}

/**
 * /predict's body: `{ name: nested array }`, with or without the leading batch dim. Returns
 * the tensors and whether the request was unbatched (then outputs drop the batch dim too).
 */
export function nestedInputs(m: Manifest, body: Record<string, unknown>): { tensors: ProvidedTensor[]; unbatched: boolean } {
  const specs = new Map(modelInputs(m).map((s) => [s.name, s]));
  const tensors: ProvidedTensor[] = [];
  let unbatched: boolean | undefined;
  for (const [name, data] of Object.entries(body)) {
    const spec = specs.get(name);
    if (!spec) throw invalid(`unknown input ${quote(name)}; ${m.name} takes ${[...specs.keys()].join(', ')}`);
    let shape = nestedShape(name, data, spec.shape.length + 1);
    const single = shape.length === spec.shape.length;
    if (unbatched !== undefined && unbatched !== single) throw invalid('send every input with a leading batch dim, or none of them without');
    unbatched = single;
    if (single) shape = [1, ...shape];
    tensors.push({ name, shape, data });
  }
  return { tensors, unbatched: unbatched ?? false };
}

/** A model output as nested arrays (row-major), optionally without its leading batch dim. */
export function nestedOutput(t: TensorValue, unbatched: boolean): { shape: number[]; data: unknown } {
  const values = t.type === 'int64' ? Array.from(t.data as BigInt64Array, Number) : Array.from(t.data as Float32Array);
  const shape = unbatched ? t.dims.slice(1) : t.dims.slice();
  return { shape, data: nest(values, shape) };
}

function nest(values: number[], shape: number[]): unknown {
  if (shape.length === 0) return values[0];
  let level: unknown[] = values;
  for (let d = shape.length - 1; d >= 1; d--) {
    const size = shape[d];
    const next: unknown[] = [];
    for (let i = 0; i < level.length; i += size) next.push(level.slice(i, i + size));
    level = next;
  }
  return level;
}

/** Flattens nested or flat row-major data, checking count, finiteness, and (int64) range. */
export function toTyped(spec: TensorSpec, data: unknown, count: number, vocabSize?: number): Float32Array | BigInt64Array {
  if (data instanceof Float32Array || data instanceof BigInt64Array) {
    const want = spec.dtype === 'int64' ? BigInt64Array : Float32Array;
    if (!(data instanceof want)) throw invalid(`input ${spec.name} must be ${spec.dtype}`);
    if (data.length !== count) throw invalid(`input ${spec.name} has ${data.length} values; its shape needs ${count}`);
    return checkTyped(spec, data, vocabSize);
  }
  if (!Array.isArray(data)) throw invalid(`input ${spec.name}: data must be an array`);
  // Array.prototype.flat is slow on large flat arrays (32 ms for 65,536 numbers, measured); skip it when there is nothing to flatten.
  const flat = data.some(Array.isArray) ? data.flat(8) : data;
  if (flat.length !== count) throw invalid(`input ${spec.name} has ${flat.length} values; its shape needs ${count}`);
  if (spec.dtype === 'float32') {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const v = flat[i];
      // 1e39 is finite as a double but Infinity in float32: the model would see Infinity.
      const f = typeof v === 'number' ? Math.fround(v) : NaN;
      if (!Number.isFinite(f)) throw invalid(`input ${spec.name}[${i}] must be a number that is finite in float32, |x| ≤ 3.4028235e38 (got ${excerpt(v, 20)})`);
      out[i] = f;
    }
    return out;
  }
  const out = new BigInt64Array(count);
  const [lo, hi] = intRange(vocabSize);
  for (let i = 0; i < count; i++) {
    const v = flat[i];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
      throw invalid(`input ${spec.name}[${i}] must be an integer in [${lo}, ${hi}] (got ${excerpt(v, 20)})`);
    }
    out[i] = BigInt(v);
  }
  return out;
}

// Token ids index an embedding: out of range would fail inside ONNX Runtime.
function intRange(vocabSize: number | undefined): [number, number] {
  return vocabSize === undefined ? [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER] : [0, vocabSize - 1];
}

function checkTyped(spec: TensorSpec, data: Float32Array | BigInt64Array, vocabSize?: number): Float32Array | BigInt64Array {
  if (data instanceof Float32Array) {
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) throw invalid(`input ${spec.name}[${i}] must be a finite number`);
    return data;
  }
  const [lo, hi] = intRange(vocabSize);
  const blo = BigInt(lo), bhi = BigInt(hi);
  for (let i = 0; i < data.length; i++) if (data[i] < blo || data[i] > bhi) throw invalid(`input ${spec.name}[${i}] must be an integer in [${lo}, ${hi}]`);
  return data;
}

function invalid(message: string): DeqError {
  return new DeqError('DEQ_ERR_INVALID_INPUT', message);
}

export interface PredictOptions {
  /** Outputs to return; default: every output role in the manifest. */
  outputs?: readonly string[];
  solver?: Partial<SolverOptions>;
}

/**
 * The tensor pipeline on an in-process DeqModel: named nested arrays in (with or without
 * the batch dim, as /predict takes them), named nested arrays out.
 */
export class TensorPipeline {
  readonly model: DeqModel;

  constructor(model: DeqModel) {
    this.model = model;
  }

  static async load(dir: string, session: Partial<SessionConfig> = {}): Promise<TensorPipeline> {
    return new TensorPipeline(await DeqModel.load(dir, session));
  }

  /** Runs the model on `{ name: nested array }` inputs. */
  async predict(inputs: Record<string, unknown>, opts: PredictOptions = {}) {
    const m = this.model.manifest;
    const { tensors, unbatched } = nestedInputs(m, inputs);
    const batch = tensorInputs(m, tensors, { maxBatch: Number.MAX_SAFE_INTEGER, vocabSize: this.model.bundle.vocab?.length });
    const result = await this.model.infer({ ...batch, outputs: opts.outputs, solver: opts.solver });
    const outputs: Record<string, { shape: number[]; data: unknown }> = {};
    for (const [name, t] of Object.entries(result.outputs)) outputs[name] = nestedOutput(t, unbatched);
    return { outputs, solver: result.solver, options: result.options, timing: result.timing };
  }

  async release(): Promise<void> {
    await this.model.release();
  }
}
