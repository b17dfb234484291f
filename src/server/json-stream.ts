import { Readable } from 'node:stream';

/** A tensor whose `data` is written as a flat JSON array of numbers. */
export interface JsonTensor {
  name: string;
  datatype: string;
  shape: readonly number[];
  /** BOOL tensors: a Uint8Array of 0/1, written true/false; BYTES tensors: strings. */
  data: Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | readonly string[];
}

/**
 * Numbers serialized per event-loop turn. Measured on the dev box (AMD EPYC,
 * 2 cores shared with other jobs): 1.3 M float32 values take ~210 ms in all;
 * the longest turn was 38 ms at 16,384 values per turn and 23 ms at 4,096, well
 * under the 50 ms a turn may hold the HTTP thread.
 */
export const NUMBERS_PER_TURN = 4096;

/**
 * Streams `{...head, outputs: [{name, datatype, shape, data}]}` as JSON text,
 * yielding to the event loop between chunks so liveness probes and other
 * requests are served while a large response is written. The Readable applies
 * backpressure: a slow client pauses formatting, memory stays at the tensors.
 * Non-finite values become null, as JSON.stringify writes them.
 */
export function jsonTensorStream(head: Record<string, unknown>, outputs: readonly JsonTensor[]): Readable {
  return Readable.from(chunks(head, outputs), { objectMode: false });
}

async function* chunks(head: Record<string, unknown>, outputs: readonly JsonTensor[]): AsyncGenerator<string> {
  const prefix = JSON.stringify(head);
  yield `${prefix.slice(0, -1)}${prefix.length > 2 ? ',' : ''}"outputs":[`;
  for (let o = 0; o < outputs.length; o++) {
    const t = outputs[o];
    yield `${o > 0 ? ',' : ''}{"name":${JSON.stringify(t.name)},"datatype":${JSON.stringify(t.datatype)},"shape":${JSON.stringify(t.shape)},"data":[`;
    const data = t.data;
    const n = data.length;
    for (let start = 0; start < n; start += NUMBERS_PER_TURN) {
      const end = Math.min(n, start + NUMBERS_PER_TURN);
      let s = start > 0 ? ',' : '';
      if (Array.isArray(data)) {
        for (let i = start; i < end; i++) s += (i > start ? ',' : '') + JSON.stringify(data[i]);
      } else if (t.datatype === 'BOOL') {
        for (let i = start; i < end; i++) s += (i > start ? ',' : '') + (data[i] ? 'true' : 'false');
      } else {
        const nums = data as Exclude<JsonTensor['data'], readonly string[]>;
        for (let i = start; i < end; i++) {
          const v = Number(nums[i]);
          s += (i > start ? ',' : '') + (Number.isFinite(v) ? String(v) : 'null');
        }
      }
      yield s;
      if (end < n) await new Promise<void>((r) => setImmediate(r));
    }
    yield ']}';
  }
  yield ']}';
}

/** Elements in a tensor of these dims. */
export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** A tensor written as nested JSON arrays of `shape` (row-major); shape [] is one number. */
export interface NestedTensor {
  shape: readonly number[];
  data: Float32Array | Float64Array | Int32Array | BigInt64Array;
}

/**
 * Streams `{...head, outputs: {name: nested array}}` (the /predict answer) in chunks of
 * NUMBERS_PER_TURN values, yielding between them like jsonTensorStream: building the nested
 * arrays first and serializing them in one piece held the HTTP thread for seconds.
 */
export function nestedJsonStream(head: Record<string, unknown>, outputs: Record<string, NestedTensor>): Readable {
  return Readable.from(nestedChunks(head, outputs), { objectMode: false });
}

async function* nestedChunks(head: Record<string, unknown>, outputs: Record<string, NestedTensor>): AsyncGenerator<string> {
  const prefix = JSON.stringify(head);
  yield `${prefix.slice(0, -1)}${prefix.length > 2 ? ',' : ''}"outputs":{`;
  let first = true;
  for (const [name, t] of Object.entries(outputs)) {
    yield `${first ? '' : ','}${JSON.stringify(name)}:`;
    first = false;
    const { shape, data } = t;
    if (shape.length === 0) {
      yield number(data[0]);
      continue;
    }
    // strides[d]: values in one entry at depth d (the last dim's is 1).
    const strides = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
    const n = elementCount(shape);
    if (n === 0) {
      yield nestEmpty(shape);
      continue;
    }
    for (let start = 0; start < n; start += NUMBERS_PER_TURN) {
      const end = Math.min(n, start + NUMBERS_PER_TURN);
      let s = '';
      for (let i = start; i < end; i++) {
        // Brackets opened before value i and closed after it: one per dim whose block starts/ends here.
        if (i > 0) s += ',';
        for (let d = 0; d < shape.length; d++) if (i % (strides[d] * shape[d]) === 0) s += '[';
        s += number(data[i]);
        for (let d = shape.length - 1; d >= 0; d--) if ((i + 1) % (strides[d] * shape[d]) === 0) s += ']';
      }
      yield s;
      if (end < n) await new Promise<void>((r) => setImmediate(r));
    }
  }
  yield '}}';
}

function number(x: number | bigint): string {
  const v = Number(x);
  return Number.isFinite(v) ? String(v) : 'null';
}

/** Nested empty arrays of a shape with a zero dim, as JSON.stringify writes them. */
function nestEmpty(shape: readonly number[]): string {
  if (shape.length === 0 || shape[0] === 0) return '[]';
  return `[${Array.from({ length: shape[0] }, () => nestEmpty(shape.slice(1))).join(',')}]`;
}
