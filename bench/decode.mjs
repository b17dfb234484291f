// Image decode cost per upload, the fast PNG path (src/preprocess/png-direct.ts) against
// libvips (sharpPixels), for Fashion-MNIST-sized PNGs: grey as a client like PIL writes them,
// and grey stored as RGB as sharp writes a 1-channel raw image. Sequential calls, CPU time from
// process.cpuUsage (libvips' own threads included). Quiet machine: npm run build && node bench/decode.mjs
import sharp from 'sharp';
import { imageToTensor, sharpPixels } from '../dist/preprocess/image.js';
import { normalizePixels } from '../dist/preprocess/normalize.js';
import { directPngPixels } from '../dist/preprocess/png-direct.js';

const p = { kind: 'image', width: 28, height: 28, channels: 1, mean: [0.286], std: [0.353], resize: 'contain' };
const limits = { maxPixels: 16_777_216 };
const raw = Buffer.alloc(784);
for (let i = 0; i < 784; i++) raw[i] = (i * 37 + (i >> 3)) & 255;
const pngs = {
  'grey PNG': await sharp(raw, { raw: { width: 28, height: 28, channels: 1 } }).toColourspace('b-w').png().toBuffer(),
  'RGB PNG (R = G = B)': await sharp(raw, { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer(),
};
const out = new Float32Array(784);
async function time(fn, n) {
  for (let i = 0; i < 50; i++) await fn();
  const c0 = process.cpuUsage(), t0 = performance.now();
  for (let i = 0; i < n; i++) await fn();
  const c = process.cpuUsage(c0);
  return { wall: ((performance.now() - t0) * 1000) / n, cpu: (c.user + c.system) / n };
}
console.log('per image, µs'.padEnd(24), 'fast path wall / cpu'.padStart(22), 'libvips wall / cpu'.padStart(22), 'cpu ratio'.padStart(10));
for (const [name, png] of Object.entries(pngs)) {
  if (!directPngPixels(png, p)) throw new Error(`${name}: the fast path declined it`);
  const fast = await time(() => imageToTensor(png, p, limits, out), 5000);
  const slow = await time(async () => normalizePixels(await sharpPixels(png, p, limits), p, out), 500);
  const f = (t) => `${t.wall.toFixed(0)} / ${t.cpu.toFixed(0)}`;
  console.log(name.padEnd(24), f(fast).padStart(22), f(slow).padStart(22), `${(slow.cpu / fast.cpu).toFixed(1)}×`.padStart(10));
}

// Where the fast path stops paying: its decode (on the HTTP thread) against libvips' whole
// pipeline (off it) as images grow; MAX_DIRECT_VALUES in png-direct.ts bounds the fast path.
console.log('\nRGB PNG at the model size, ms'.padEnd(32), 'fast path'.padStart(16), 'libvips'.padStart(10));
for (const w of [28, 64, 128, 147]) {
  const rgb = Buffer.alloc(w * w * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 2654435761) >>> 24;
  const png = await sharp(rgb, { raw: { width: w, height: w, channels: 3 } }).png().toBuffer();
  const q = { ...p, width: w, height: w, channels: 3, mean: [0, 0, 0], std: [1, 1, 1] };
  const n = Math.max(20, Math.floor(50_000 / (w * w)) * 10);
  if (!directPngPixels(png, q)) throw new Error(`${w} × ${w}: the fast path declined it`);
  const fast = await time(() => directPngPixels(png, q), n);
  const slow = await time(() => sharpPixels(png, q, limits), Math.max(20, n / 10));
  console.log(`${w} × ${w} × 3`.padEnd(32), (fast.wall / 1000).toFixed(2).padStart(16), (slow.wall / 1000).toFixed(2).padStart(10));
}
