// nestedJsonStream writes what JSON.stringify writes for the same nested arrays, in chunks.
import { describe, expect, it } from 'vitest';
import { NUMBERS_PER_TURN, nestedJsonStream } from '../../src/server/json-stream.js';

function nest(values: number[], shape: number[]): unknown {
  if (shape.length === 0) return values[0];
  if (shape.length === 1) return values.slice(0, shape[0]);
  const per = values.length / shape[0] || 0;
  return Array.from({ length: shape[0] }, (_, i) => nest(values.slice(i * per, (i + 1) * per), shape.slice(1)));
}

async function text(stream: NodeJS.ReadableStream): Promise<{ text: string; chunks: number }> {
  let s = '', chunks = 0;
  for await (const c of stream) { s += String(c); chunks++; }
  return { text: s, chunks };
}

describe('nestedJsonStream', () => {
  it.each([[[]], [[3]], [[2, 3]], [[2, 1, 4]], [[1, 2, 2, 2]], [[0]], [[2, 0]], [[3, 0, 2]]])('shape %j: the JSON of the nested arrays', async (shape) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, (_, i) => (i % 5 === 4 ? NaN : i / 8 - 1));
    const out = await text(nestedJsonStream({ model: 'm', shapes: { y: shape } }, { y: { shape, data } }));
    const expected = { model: 'm', shapes: { y: shape }, outputs: { y: nest(Array.from(data, (v) => (Number.isFinite(v) ? v : null)) as number[], shape) } };
    expect(JSON.parse(out.text)).toEqual(expected);
  });

  it('several outputs, int64 among them, and a large one written over several turns', async () => {
    const big = new Float32Array(3 * NUMBERS_PER_TURN + 7).map((_, i) => i);
    const ids = BigInt64Array.from([1n, 2n, 3n, 4n]);
    const out = await text(nestedJsonStream({}, { a: { shape: [big.length / 1], data: big }, ids: { shape: [2, 2], data: ids } }));
    expect(out.chunks).toBeGreaterThan(3);
    const parsed = JSON.parse(out.text);
    expect(parsed.outputs.a).toEqual(Array.from(big));
    expect(parsed.outputs.ids).toEqual([[1, 2], [3, 4]]);
  });
});
