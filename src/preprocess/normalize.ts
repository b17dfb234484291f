import type { ImagePreprocess } from '../runtime/manifest.js';

/**
 * Turns interleaved 8-bit pixels (height × width × channels, as sharp and IDX
 * files give them) into the model's planar float input (channels × height × width),
 * applying the manifest's invert and mean/std. Writes into `out` at `offset`
 * so batches are filled without intermediate copies.
 */
export function normalizePixels(pixels: Uint8Array, p: ImagePreprocess, out: Float32Array, offset = 0): void {
  const { width, height, channels } = p;
  const plane = width * height;
  if (pixels.length !== plane * channels) {
    throw new RangeError(`expected ${plane * channels} pixel values for ${width}×${height}×${channels}, got ${pixels.length}`);
  }
  const invert = p.invert === true;
  for (let c = 0; c < channels; c++) {
    const scale = 1 / (255 * p.std[c]);
    const shift = p.mean[c] / p.std[c];
    const o = offset + c * plane;
    for (let i = 0; i < plane; i++) {
      const v = pixels[i * channels + c];
      out[o + i] = (invert ? 255 - v : v) * scale - shift;
    }
  }
}
