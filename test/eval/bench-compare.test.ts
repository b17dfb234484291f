// The peers' JSON lines: Python writes non-finite floats as bare tokens that JSON.parse rejects.
import { describe, expect, it } from 'vitest';
import { parsePeerJson } from '../../src/eval/bench-compare.js';

describe('parsePeerJson', () => {
  it('reads NaN and ±Infinity as numbers, wherever they stand in arrays and objects', () => {
    const r = parsePeerJson('{"logits": [1.5, NaN, NaN, -Infinity], "ms": Infinity, "nfe": [3]}') as { logits: number[]; ms: number; nfe: number[] };
    expect(r.logits[0]).toBe(1.5);
    expect(Number.isNaN(r.logits[1]) && Number.isNaN(r.logits[2])).toBe(true);
    expect(r.logits[3]).toBe(-Infinity);
    expect(r.ms).toBe(Infinity);
    expect(r.nfe).toEqual([3]);
  });

  it('leaves the words inside strings alone', () => {
    expect(parsePeerJson('{"peer": "NaN, Infinity", "torch": "2.15"}')).toEqual({ peer: 'NaN, Infinity', torch: '2.15' });
  });

  it('still rejects a line that is not JSON', () => {
    expect(() => parsePeerJson('Traceback (most recent call last):')).toThrow(SyntaxError);
  });
});
