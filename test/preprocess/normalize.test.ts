import { describe, expect, it } from 'vitest';
import { normalizePixels } from '../../src/preprocess/normalize.js';
import type { ImagePreprocess } from '../../src/runtime/manifest.js';
import { expectClose } from '../helpers/float.js';

describe('normalizePixels', () => {
  it('scales, inverts and standardizes a grayscale image', () => {
    const p: ImagePreprocess = { kind: 'image', width: 2, height: 1, channels: 1, mean: [0.5], std: [0.25] };
    const out = new Float32Array(2);
    normalizePixels(Uint8Array.of(0, 255), p, out);
    expectClose(out, [-2, 2], 1e-6);
    normalizePixels(Uint8Array.of(0, 255), { ...p, invert: true }, out);
    expectClose(out, [2, -2], 1e-6);
  });

  it('turns interleaved RGB into planar channels at an offset', () => {
    const p: ImagePreprocess = { kind: 'image', width: 2, height: 1, channels: 3, mean: [0, 0, 0], std: [1, 1, 1] };
    const out = new Float32Array(8).fill(-1);
    normalizePixels(Uint8Array.of(255, 0, 51, 0, 255, 102), p, out, 2);
    expectClose(out, [-1, -1, 1, 0, 0, 1, 0.2, 0.4], 1e-6);
  });

  it('rejects a pixel buffer of the wrong size', () => {
    const p: ImagePreprocess = { kind: 'image', width: 2, height: 2, channels: 1, mean: [0], std: [1] };
    expect(() => normalizePixels(new Uint8Array(3), p, new Float32Array(4))).toThrow(RangeError);
  });
});
