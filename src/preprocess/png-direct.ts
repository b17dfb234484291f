import zlib from 'node:zlib';
import type { ImagePreprocess } from '../runtime/manifest.js';

// A libvips pipeline has a fixed cost of about 0.6 ms of CPU even for a 28×28 PNG, and
// the full decode (metadata, rotate, flatten, greyscale, resize) about 1.9 ms: more than
// a Fashion-MNIST solve. A PNG that is already at the model's size and needs no colour
// work decodes here instead (bench/decode.mjs). Everything else, and anything this path is
// unsure of, goes to sharp. The result must equal sharp's to the byte
// (test/preprocess/png-direct.test.ts compares them).
//
// Why not a PNG library: this path first used fast-png, whose streaming inflater allocates
// about 100 KB of buffers per decode; under load that made garbage collection on the HTTP
// thread and V8's helper threads cost more CPU than the decode. pngjs inflates through Node's
// zlib but patches its internals and returns pixels for a truncated image stream. What is
// left here is what a library would do around zlib for the one layout this path takes
// (8-bit, not interlaced): chunk walk, CRC, un-filtering. zlib itself is Node's.

/**
 * Largest model input (width × height × channels) decoded here. The decode runs on the HTTP
 * thread and its cost grows with the pixels, while libvips runs off it: the bound keeps a
 * decode well under half a millisecond of the thread.
 */
export const MAX_DIRECT_VALUES = 65_536;

/** Chunks that change nothing about the pixels sharp returns. Any other chunk sends the image to sharp. */
const NEUTRAL_CHUNKS = new Set(['IHDR', 'IDAT', 'IEND', 'tEXt', 'zTXt', 'iTXt', 'tIME', 'pHYs']);
const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
/** Bytes per pixel of each 8-bit colour type taken here: grey, RGB, grey + alpha, RGBA (3, palette, is not). */
const BYTES_PER_PIXEL: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };
/** zlib.crc32 is Node ≥ 20.15; without it every image goes to sharp. */
const crc32: ((data: Uint8Array) => number) | undefined = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;

/**
 * The pixels of `bytes` as sharp's pipeline would give them (height × width ×
 * p.channels, 8-bit), when that needs no resize and no colour conversion; else
 * undefined, and the caller decodes with sharp. Never throws: a PNG this path
 * cannot read is sharp's to judge (and to name the error).
 */
export function directPngPixels(bytes: Uint8Array, p: ImagePreprocess): Uint8Array | undefined {
  if (p.width * p.height * p.channels > MAX_DIRECT_VALUES || !crc32) return undefined;
  const png = readChunks(bytes);
  if (!png || png.width !== p.width || png.height !== p.height) return undefined;
  const bpp = BYTES_PER_PIXEL[png.colourType];
  // Colour channels in the file (alpha excluded): a grey file for a colour model needs sharp's conversion.
  const colour = png.colourType === 2 || png.colourType === 6 ? 3 : 1;
  if (bpp === undefined || colour < p.channels) return undefined;
  const alpha = png.colourType === 4 || png.colourType === 6;
  const stride = p.width * bpp;
  let raw: Uint8Array;
  try {
    // Throws on a truncated or corrupt stream; maxOutputLength stops a stream that inflates past the image.
    raw = zlib.inflateSync(png.idat, { maxOutputLength: p.height * (stride + 1) });
  } catch {
    return undefined;
  }
  if (raw.length !== p.height * (stride + 1) || !unfilter(raw, stride, bpp, p.height)) return undefined;
  const out = new Uint8Array(p.width * p.height * p.channels);
  for (let y = 0, o = 0; y < p.height; y++) {
    for (let x = 0, s = y * (stride + 1) + 1; x < p.width; x++, s += bpp) {
      // Opaque only: flattening a translucent pixel is sharp's arithmetic, not ours to copy.
      if (alpha && raw[s + bpp - 1] !== 255) return undefined;
      if (p.channels === 1) {
        // A grey pixel stored as RGB is that grey (sharp's greyscale maps R = G = B = v to v; tested for every v).
        if (colour === 3 && (raw[s] !== raw[s + 1] || raw[s] !== raw[s + 2])) return undefined;
        out[o++] = raw[s];
      } else {
        out[o++] = raw[s];
        out[o++] = raw[s + 1];
        out[o++] = raw[s + 2];
      }
    }
  }
  return out;
}

interface PngParts {
  width: number;
  height: number;
  colourType: number;
  /** The zlib stream: every IDAT's data, in order. */
  idat: Uint8Array;
}

// The chunk list, walked once: every chunk neutral and inside the buffer with a good CRC, IEND
// last, and an IHDR for an 8-bit, non-interlaced image with standard compression and filtering.
// An EXIF orientation, ICC profile, gamma, palette or transparency chunk fails it.
function readChunks(b: Uint8Array): PngParts | undefined {
  if (b.length < 8) return undefined;
  for (let i = 0; i < 8; i++) if (b[i] !== SIGNATURE[i]) return undefined;
  const u32 = (at: number) => ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
  const idat: Uint8Array[] = [];
  let header: Omit<PngParts, 'idat'> | undefined;
  let at = 8;
  while (at + 12 <= b.length) {
    const len = u32(at);
    const type = String.fromCharCode(b[at + 4], b[at + 5], b[at + 6], b[at + 7]);
    if (!NEUTRAL_CHUNKS.has(type) || at + 12 + len > b.length) return undefined;
    if (crc32!(b.subarray(at + 4, at + 8 + len)) !== u32(at + 8 + len)) return undefined;
    const data = b.subarray(at + 8, at + 8 + len);
    if (type === 'IHDR') {
      // Bit depth 8, compression 0, filter method 0, interlace 0 (Adam7 goes to sharp).
      if (at !== 8 || len !== 13 || data[8] !== 8 || data[10] !== 0 || data[11] !== 0 || data[12] !== 0) return undefined;
      header = { width: u32(at + 8), height: u32(at + 12), colourType: data[9] };
    } else if (type === 'IDAT') {
      idat.push(data);
    }
    at += 12 + len;
    if (type === 'IEND') return header && idat.length > 0 && at === b.length ? { ...header, idat: idat.length === 1 ? idat[0] : Buffer.concat(idat) } : undefined;
  }
  return undefined;
}

// Reverses PNG's per-row filters in place (filter method 0: None, Sub, Up, Average, Paeth).
// Each row is its filter byte then `stride` bytes; `bpp` is the distance to the left neighbour.
// False on an unknown filter type.
function unfilter(raw: Uint8Array, stride: number, bpp: number, rows: number): boolean {
  for (let y = 0; y < rows; y++) {
    const row = y * (stride + 1) + 1, up = row - stride - 1;
    const filter = raw[row - 1];
    if (filter === 0) continue;
    if (filter > 4) return false;
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? raw[row + x - bpp] : 0;
      const b = y > 0 ? raw[up + x] : 0;
      let add: number;
      if (filter === 1) add = a;
      else if (filter === 2) add = b;
      else if (filter === 3) add = (a + b) >> 1;
      else {
        const c = x >= bpp && y > 0 ? raw[up + x - bpp] : 0;
        const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
        add = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      raw[row + x] = (raw[row + x] + add) & 255;
    }
  }
  return true;
}
