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
