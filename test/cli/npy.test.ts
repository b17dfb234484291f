import { describe, expect, it } from 'vitest';
import { fromNested, parseNpy } from '../../src/cli/npy.js';
import { DeqError } from '../../src/errors.js';

function npy(descr: string, shape: number[], body: Uint8Array): Uint8Array {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header = header.padEnd(127 - 10, ' ') + '\n';
  return Buffer.concat([Buffer.from('\x93NUMPY\x01\x00', 'latin1'), Buffer.from([header.length, 0]), Buffer.from(header, 'latin1'), body]);
}

describe('parseNpy', () => {
  it('reads float32 and int64 arrays with their shape', () => {
    const f = parseNpy(npy('<f4', [2, 2], new Uint8Array(Float32Array.of(1.5, -2, 3, 4).buffer)), 'a.npy');
    expect(f.shape).toEqual([2, 2]);
    expect(Array.from(f.data as Float64Array)).toEqual([1.5, -2, 3, 4]);
    const i = parseNpy(npy('<i8', [3], new Uint8Array(BigInt64Array.of(7n, 8n, 9n).buffer)), 'b.npy');
    expect(i.shape).toEqual([3]);
    expect(Array.from(i.data as BigInt64Array)).toEqual([7n, 8n, 9n]);
  });

  it('rejects truncated files, bad magic and unsupported dtypes', () => {
    const codes = [
      () => parseNpy(npy('<f4', [4], new Uint8Array(8)), 'short.npy'),
      () => parseNpy(new Uint8Array(20), 'magic.npy'),
      () => parseNpy(npy('<c8', [1], new Uint8Array(8)), 'complex.npy'),
    ].map((f) => { try { f(); return 'none'; } catch (e) { return (e as DeqError).code; } });
    expect(codes).toEqual(['DEQ_ERR_INVALID_INPUT', 'DEQ_ERR_INVALID_INPUT', 'DEQ_ERR_INVALID_INPUT']);
  });
});

describe('fromNested', () => {
  it('flattens row-major and keeps the shape', () => {
    const a = fromNested([[1, 2, 3], [4, 5, 6]], 'x');
    expect(a.shape).toEqual([2, 3]);
    expect(Array.from(a.data as Float64Array)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('rejects ragged arrays and non-numbers', () => {
    expect(() => fromNested([[1, 2], [3]], 'x')).toThrow(/ragged/);
    expect(() => fromNested([1, 'a'], 'x')).toThrow(/finite number/);
    expect(() => fromNested([1, null], 'x')).toThrow(DeqError);
  });
});
