import { decode } from 'fast-png';
import type { ImagePreprocess } from '../runtime/manifest.js';

// A libvips pipeline has a fixed cost of about 0.6 ms of CPU even for a 28×28 PNG, and
// the full decode (metadata, rotate, flatten, greyscale, resize) about 1.9 ms: more than
// a Fashion-MNIST solve. A PNG that is already at the model's size and needs no colour
// work decodes here instead, with fast-png (0.17 ms with normalizing; bench/decode.mjs).
// Everything else, and anything this path is unsure of, goes to sharp. The result must
// equal sharp's to the byte (test/preprocess/png-direct.test.ts compares them).

/**
 * Largest model input (width × height × channels) decoded here. fast-png runs on the HTTP
 * thread and its cost grows with the pixels (0.36 ms at 128 × 128 × 3, 0.79 ms at 224 × 224
 * × 3; bench/decode.mjs), while libvips runs off it: the bound keeps a decode near half a
 * millisecond of the thread.
 */
export const MAX_DIRECT_VALUES = 65_536;

/** Chunks that change nothing about the pixels sharp returns. Any other chunk sends the image to sharp. */
const NEUTRAL_CHUNKS = new Set(['IHDR', 'IDAT', 'IEND', 'tEXt', 'zTXt', 'iTXt', 'tIME', 'pHYs']);
const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * The pixels of `bytes` as sharp's pipeline would give them (height × width ×
 * p.channels, 8-bit), when that needs no resize and no colour conversion; else
 * undefined, and the caller decodes with sharp. Never throws: a PNG this path
 * cannot read is sharp's to judge (and to name the error).
 */
export function directPngPixels(bytes: Uint8Array, p: ImagePreprocess): Uint8Array | undefined {
  if (p.width * p.height * p.channels > MAX_DIRECT_VALUES || !plainChunks(bytes)) return undefined;
  let png: ReturnType<typeof decode>;
  try {
    png = decode(bytes, { checkCrc: true });
  } catch {
    return undefined;
  }
  if (png.width !== p.width || png.height !== p.height || png.depth !== 8 || png.palette || png.transparency) return undefined;
  const src = png.data, from = png.channels;
  // Colour channels in the file (alpha excluded), and whether it has alpha.
  const colour = from === 1 || from === 2 ? 1 : 3;
  const alpha = from === 2 || from === 4;
  if (!(from >= 1 && from <= 4) || colour < p.channels) return undefined;
  const pixels = p.width * p.height;
  const out = new Uint8Array(pixels * p.channels);
  for (let i = 0, s = 0, o = 0; i < pixels; i++, s += from) {
    // Opaque only: flattening a translucent pixel is sharp's arithmetic, not ours to copy.
    if (alpha && src[s + from - 1] !== 255) return undefined;
    if (p.channels === 1) {
      // A grey pixel stored as RGB is that grey (sharp's greyscale maps R = G = B = v to v; tested for every v).
      if (colour === 3 && (src[s] !== src[s + 1] || src[s] !== src[s + 2])) return undefined;
      out[o++] = src[s];
    } else {
      out[o++] = src[s];
      out[o++] = src[s + 1];
      out[o++] = src[s + 2];
    }
  }
  return out;
}

// The chunk list, walked without decoding: every chunk neutral, each inside the buffer,
// IEND last. An EXIF orientation, ICC profile, gamma or transparency chunk fails it.
function plainChunks(b: Uint8Array): boolean {
  if (b.length < 8) return false;
  for (let i = 0; i < 8; i++) if (b[i] !== SIGNATURE[i]) return false;
  let at = 8;
  while (at + 12 <= b.length) {
    const len = ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
    const type = String.fromCharCode(b[at + 4], b[at + 5], b[at + 6], b[at + 7]);
    if (!NEUTRAL_CHUNKS.has(type)) return false;
    at += 12 + len;
    if (at > b.length) return false;
    if (type === 'IEND') return at === b.length;
  }
  return false;
}
