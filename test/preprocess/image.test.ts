import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { isDeqError } from '../../src/errors.js';
import { imageToTensor } from '../../src/preprocess/image.js';
import type { ImagePreprocess } from '../../src/runtime/index.js';
import { expectClose } from '../helpers/float.js';

const GRAY: ImagePreprocess = { kind: 'image', width: 4, height: 4, channels: 1, mean: [0.5], std: [0.5], resize: 'fill' };
const limits = { maxPixels: 1_000_000 };

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isDeqError(err)) return err.code;
    throw err;
  }
  return 'no error';
}

describe('imageToTensor', () => {
  it('normalizes grayscale pixels per the manifest: (v/255 − mean) / std', async () => {
    const pixels = Buffer.from(Array.from({ length: 16 }, (_, i) => i * 16));
    const png = await sharp(pixels, { raw: { width: 4, height: 4, channels: 1 } }).png().toBuffer();
    const x = await imageToTensor(png, GRAY, limits);
    expectClose(x, Array.from(pixels, (v) => (v / 255 - 0.5) / 0.5), 1e-6);
  });

  it('inverts, converts colour to gray, and lays RGB out planar', async () => {
    const white = await sharp({ create: { width: 6, height: 6, channels: 3, background: 'white' } }).png().toBuffer();
    const inv = await imageToTensor(white, { ...GRAY, invert: true, mean: [0], std: [1] }, limits);
    expectClose(inv, new Array(16).fill(0), 1e-6);
    const red = await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: 255, g: 0, b: 0 } } }).png().toBuffer();
    const rgb = await imageToTensor(red, { ...GRAY, channels: 3, mean: [0, 0, 0], std: [1, 1, 1] }, limits);
    expectClose(rgb, [...new Array(16).fill(1), ...new Array(32).fill(0)], 1e-6);
  });

  it('resizes to the model size, padding "contain" with the background', async () => {
    const wide = await sharp({ create: { width: 40, height: 10, channels: 3, background: 'white' } }).png().toBuffer();
    const x = await imageToTensor(wide, { ...GRAY, resize: 'contain', mean: [0], std: [1] }, limits);
    expect(x).toHaveLength(16);
    expectClose(x.subarray(0, 4), [0, 0, 0, 0], 1e-6); // top row is padding (black)
    expect(Math.max(...x)).toBeCloseTo(1, 5);
  });

  it('refuses empty, corrupt, SVG and over-limit images with catalogue codes', async () => {
    expect(await codeOf(imageToTensor(new Uint8Array(0), GRAY, limits))).toBe('DEQ_ERR_IMAGE_DECODE');
    expect(await codeOf(imageToTensor(Buffer.from('nope'), GRAY, limits))).toBe('DEQ_ERR_UNSUPPORTED_MEDIA_TYPE');
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>');
    expect(await codeOf(imageToTensor(svg, GRAY, limits))).toBe('DEQ_ERR_UNSUPPORTED_MEDIA_TYPE');
    const big = await sharp({ create: { width: 200, height: 200, channels: 3, background: 'white' } }).png().toBuffer();
    expect(await codeOf(imageToTensor(big, GRAY, { maxPixels: 100 * 100 }))).toBe('DEQ_ERR_PAYLOAD_TOO_LARGE');
    const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: 'white' } }).jpeg().toBuffer();
    expect(await codeOf(imageToTensor(jpeg.subarray(0, jpeg.length >> 1), GRAY, limits))).toBe('DEQ_ERR_IMAGE_DECODE');
  });
});
