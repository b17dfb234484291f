import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { imageToTensor, sharpPixels } from '../../src/preprocess/image.js';
import { normalizePixels } from '../../src/preprocess/normalize.js';
import { directPngPixels } from '../../src/preprocess/png-direct.js';
import type { ImagePreprocess } from '../../src/runtime/index.js';

const GREY: ImagePreprocess = { kind: 'image', width: 16, height: 16, channels: 1, mean: [0.286], std: [0.353], resize: 'contain' };
const RGB: ImagePreprocess = { ...GREY, channels: 3, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
const limits = { maxPixels: 1_000_000 };
const SIG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type, 'latin1'), data])) >>> 0);
  return Buffer.concat([head, data, crc]);
}

/**
 * A PNG written by hand, so each case controls its colour type, depth, row filters and chunks.
 * `filter` gives each row's filter type (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth; default 0);
 * `split` cuts the image stream into IDAT chunks of that many bytes.
 */
function png(width: number, height: number, colourType: number, pixels: Uint8Array, o: { depth?: number; before?: Buffer[]; after?: Buffer[]; idat?: (z: Buffer) => Buffer; filter?: (y: number) => number; split?: number; raw?: (rows: Buffer) => Buffer; ihdr?: (h: Buffer) => void } = {}): Buffer {
  const depth = o.depth ?? 8;
  const per = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colourType]! * (depth / 8);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = depth;
  ihdr[9] = colourType;
  o.ihdr?.(ihdr);
  const stride = width * per, bpp = Math.max(1, per);
  const rows = Buffer.alloc(height * (1 + stride));
  for (let y = 0; y < height; y++) {
    const f = o.filter?.(y) ?? 0;
    rows[y * (1 + stride)] = f;
    const px = (yy: number, x: number) => (yy < 0 || x < 0 ? 0 : pixels[yy * stride + x]);
    for (let x = 0; x < stride; x++) {
      const a = px(y, x - bpp), b = px(y - 1, x), c = px(y - 1, x - bpp);
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const predictor = [0, a, b, Math.floor((a + b) / 2), pa <= pb && pa <= pc ? a : pb <= pc ? b : c][f] ?? 0;
      rows[y * (1 + stride) + 1 + x] = (pixels[y * stride + x] - predictor) & 255;
    }
  }
  let z: Buffer = deflateSync(o.raw ? o.raw(rows) : rows);
  if (o.idat) z = o.idat(z);
  const idat: Buffer[] = [];
  for (let at = 0; at < z.length; at += o.split ?? z.length) idat.push(chunk('IDAT', z.subarray(at, at + (o.split ?? z.length))));
  return Buffer.concat([SIG, chunk('IHDR', ihdr), ...(o.before ?? []), ...idat, ...(o.after ?? []), chunk('IEND', new Uint8Array(0))]);
}

function random(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/** Every grey level 0…255 on a 16×16 image, as the colour type asks (opaque alpha where it has one). */
function allGreys(colourType: 0 | 2 | 4 | 6): Uint8Array {
  const per = { 0: 1, 2: 3, 4: 2, 6: 4 }[colourType];
  const out = new Uint8Array(256 * per);
  for (let v = 0; v < 256; v++) {
    out.fill(v, v * per, (v + 1) * per);
    if (colourType === 4 || colourType === 6) out[(v + 1) * per - 1] = 255;
  }
  return out;
}

describe('directPngPixels: the fast path gives exactly what sharp gives', () => {
  const cases: [string, Buffer, ImagePreprocess][] = [
    ['grey, random pixels', png(16, 16, 0, random(256, 1)), GREY],
    ['grey, every level', png(16, 16, 0, allGreys(0)), GREY],
    ['RGB with R = G = B, every level, into a grey model', png(16, 16, 2, allGreys(2)), GREY],
    ['grey + opaque alpha', png(16, 16, 4, allGreys(4)), GREY],
    ['RGBA, grey and opaque', png(16, 16, 6, allGreys(6)), GREY],
    ['RGB, random, into an RGB model', png(16, 16, 2, random(768, 2)), RGB],
    ['RGBA opaque, random colour, into an RGB model', png(16, 16, 6, random(1024, 3).map((v, i) => (i % 4 === 3 ? 255 : v))), RGB],
    ['grey at the size bound (256 × 256 = MAX_DIRECT_VALUES)', png(256, 256, 0, random(65_536, 17)), { ...GREY, width: 256, height: 256 }],
    ['grey, every row filter (None, Sub, Up, Average, Paeth in turn)', png(16, 16, 0, random(256, 20), { filter: (y) => y % 5 }), GREY],
    ['RGB with R = G = B, every row filter', png(16, 16, 2, allGreys(2), { filter: (y) => (y + 1) % 5 }), GREY],
    ['grey + alpha, every row filter (the left neighbour is 2 bytes away)', png(16, 16, 4, allGreys(4), { filter: (y) => (y + 2) % 5 }), GREY],
    ['RGBA, every row filter, into an RGB model', png(16, 16, 6, random(1024, 21).map((v, i) => (i % 4 === 3 ? 255 : v)), { filter: (y) => (y + 3) % 5 }), RGB],
    ['RGB, Paeth on every row, into an RGB model', png(16, 16, 2, random(768, 22), { filter: () => 4 }), RGB],
    ['the image stream split over many IDAT chunks', png(16, 16, 0, random(256, 23), { filter: (y) => y % 5, split: 7 }), GREY],
    ['grey with text, time and pHYs chunks', png(16, 16, 0, random(256, 4), { before: [chunk('pHYs', new Uint8Array(9)), chunk('tEXt', Buffer.from('Comment\0hello', 'latin1'))], after: [chunk('tIME', new Uint8Array(7))] }), GREY],
  ];
  for (const [name, bytes, p] of cases) {
    it(name, async () => {
      const direct = directPngPixels(bytes, p);
      expect(direct).toBeDefined();
      expect(Array.from(direct!)).toEqual(Array.from(await sharpPixels(bytes, p, limits)));
    });
  }

  it('returns the pixels the file holds, whatever the row filters', () => {
    const pixels = random(256, 24);
    for (let f = 0; f <= 4; f++) expect(Array.from(directPngPixels(png(16, 16, 0, pixels, { filter: () => f }), GREY)!), `filter ${f}`).toEqual(Array.from(pixels));
  });

  it('matches sharp on PNGs sharp wrote: every compression level, adaptive filters', async () => {
    for (let level = 0; level <= 9; level++) {
      const bytes = await sharp(Buffer.from(random(784, level + 10)), { raw: { width: 28, height: 28, channels: 1 } })
        .toColourspace('b-w').png({ compressionLevel: level, adaptiveFiltering: true }).toBuffer();
      const p = { ...GREY, width: 28, height: 28 };
      const direct = directPngPixels(bytes, p);
      expect(direct, `level ${level}`).toBeDefined();
      expect(Array.from(direct!)).toEqual(Array.from(await sharpPixels(bytes, p, limits)));
    }
  });
});

describe('directPngPixels: what it leaves to sharp', () => {
  const declined: [string, Buffer, ImagePreprocess][] = [
    ['another size (needs a resize)', png(8, 8, 0, random(64, 5)), GREY],
    ['a translucent pixel', png(16, 16, 4, allGreys(4).map((v, i) => (i === 1 ? 128 : v))), GREY],
    ['a colour pixel for a grey model', png(16, 16, 2, allGreys(2).map((v, i) => (i === 301 ? v ^ 1 : v))), GREY],
    ['a grey image for an RGB model', png(16, 16, 0, random(256, 6)), RGB],
    ['16-bit depth', png(16, 16, 0, random(512, 7), { depth: 16 }), GREY],
    ['a palette', png(16, 16, 3, random(256, 8).map((v) => v & 1), { before: [chunk('PLTE', Uint8Array.of(0, 0, 0, 200, 100, 50))] }), GREY],
    ['a gamma chunk', png(16, 16, 0, random(256, 9), { before: [chunk('gAMA', Uint8Array.of(0, 0, 0xaf, 0xc8))] }), GREY],
    ['a tRNS chunk', png(16, 16, 0, random(256, 10), { before: [chunk('tRNS', Uint8Array.of(0, 7))] }), GREY],
    ['bytes after IEND', Buffer.concat([png(16, 16, 0, random(256, 11)), Buffer.from([0, 0])]), GREY],
    ['a bad CRC', (() => { const b = png(16, 16, 0, random(256, 12)); b[b.length - 13] ^= 1; return b; })(), GREY],
    ['image data cut short (valid CRC)', png(16, 16, 0, random(256, 13), { idat: (z) => z.subarray(0, z.length >> 1) }), GREY],
    ['not a PNG', Buffer.from('GIF89a'), GREY],
    ['an unknown row filter type (5)', png(16, 16, 0, random(256, 25), { raw: (rows) => { rows[17 * 3] = 5; return rows; } }), GREY],
    ['an image stream a row short', png(16, 16, 0, random(256, 29), { raw: (rows) => rows.subarray(0, rows.length - 17) }), GREY],
    ['Adam7 in IHDR over data laid out without it', png(16, 16, 0, random(256, 30), { ihdr: (h) => { h[12] = 1; } }), GREY],
    ['an image stream longer than the image', png(16, 16, 0, random(256, 26), { raw: (rows) => Buffer.concat([rows, Buffer.alloc(17)]) }), GREY],
    ['no IDAT chunk', Buffer.concat([SIG, chunk('IHDR', png(16, 16, 0, random(256, 27)).subarray(16, 29)), chunk('IEND', new Uint8Array(0))]), GREY],
    ['a model input over MAX_DIRECT_VALUES (the decode would hold the HTTP thread)', png(257, 257, 0, random(66_049, 16)), { ...GREY, width: 257, height: 257 }],
  ];
  for (const [name, bytes, p] of declined) {
    it(name, () => expect(directPngPixels(bytes, p)).toBeUndefined());
  }

  it('Adam7 interlacing goes to sharp', async () => {
    const bytes = await sharp(Buffer.from(random(784, 28)), { raw: { width: 28, height: 28, channels: 1 } })
      .toColourspace('b-w').png({ progressive: true }).toBuffer();
    expect(directPngPixels(bytes, { ...GREY, width: 28, height: 28 })).toBeUndefined();
  });

  it('with an EXIF orientation, sharp rotates, so the fast path declines', async () => {
    const bytes = await sharp(Buffer.from(random(256, 14)), { raw: { width: 16, height: 16, channels: 1 } })
      .toColourspace('b-w').png().withMetadata({ orientation: 6 }).toBuffer();
    expect(directPngPixels(bytes, GREY)).toBeUndefined();
  });

  it('imageToTensor falls back to sharp for them, with sharp\'s answer', async () => {
    const bytes = png(16, 16, 4, allGreys(4).map((v, i) => (i % 2 === 1 ? 100 : v)));
    const expected = new Float32Array(256);
    normalizePixels(await sharpPixels(bytes, GREY, limits), GREY, expected);
    expect(Array.from(await imageToTensor(bytes, GREY, limits))).toEqual(Array.from(expected));
  });

  it('takes no shortcut past the pixel limit', async () => {
    const bytes = png(16, 16, 0, random(256, 15));
    await expect(imageToTensor(bytes, GREY, { maxPixels: 100 })).rejects.toMatchObject({ code: 'DEQ_ERR_PAYLOAD_TOO_LARGE' });
  });
});
