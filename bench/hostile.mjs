// Hostile-request figures for docs/reliability.md (issue #12). Run after `npm run build`:
//   node bench/hostile.mjs
// Serves the shipped brown-lm-jr and fashion-mnist-jr at the default settings
// (one worker) and measures:
//  1. the 12 KB v2 request for full logprobs at batch 32 × 64: status, time;
//  2. a v2 answer at the output cap (batch 1 × 64 × 14,116 logprobs): time, bytes and
//     the slowest /v2/health/live answer while it is written;
//  3. /score with 32 texts of "a " × 10,000 (640 KB): status and time;
//  4. /classify p50 alone, then while a 312-window /score (the longest text) runs.
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { loadConfig, startServer } from '../dist/server/index.js';

const dir = await mkdtemp(join(tmpdir(), 'deq-hostile-'));
for (const m of ['brown-lm-jr', 'fashion-mnist-jr']) await cp(fileURLToPath(new URL(`../models/${m}`, import.meta.url)), join(dir, m), { recursive: true });
const s = await startServer(loadConfig([], {}, { port: 0, modelsDir: dir, workers: 1, logLevel: 'silent' }));
const post = (path, body, type = 'application/json') => fetch(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': type }, body });
const timed = async (f) => { const t0 = performance.now(); const r = await f(); return { r, ms: performance.now() - t0 }; };
async function slowestLive(done) {
  let finished = false, worst = 0;
  done.finally(() => { finished = true; });
  while (!finished) {
    const t0 = performance.now();
    await (await fetch(`${s.url}/v2/health/live`)).arrayBuffer();
    worst = Math.max(worst, performance.now() - t0);
    await new Promise((r) => setTimeout(r, 10));
  }
  return worst;
}
const lm = (batch, length, outputs) => {
  const tokens = Array.from({ length: batch * length }, (_, i) => 5 + (i % 300));
  return JSON.stringify({ inputs: [{ name: 'tokens', datatype: 'INT64', shape: [batch, length], data: tokens }, { name: 'targets', datatype: 'INT64', shape: [batch, length], data: tokens }], outputs: outputs.map((name) => ({ name })) });
};

const big = lm(32, 64, ['logprobs']);
const a = await timed(() => post('/v2/models/brown-lm-jr/infer', big));
console.log(`1. ${(big.length / 1024).toFixed(1)} KB request, logprobs 32×64×14116: ${a.r.status} ${a.r.headers.get('x-deq-error-code')} in ${a.ms.toFixed(1)} ms`);

const capped = timed(() => post('/v2/models/brown-lm-jr/infer', lm(1, 64, ['logprobs'])).then(async (r) => ({ status: r.status, bytes: (await r.arrayBuffer()).byteLength })));
const worst = await slowestLive(capped);
const c = await capped;
console.log(`2. logprobs 1×64×14116 (903,424 values): ${c.r.status}, ${(c.r.bytes / 2 ** 20).toFixed(1)} MB in ${c.ms.toFixed(0)} ms; slowest liveness ${worst.toFixed(1)} ms`);

const texts = JSON.stringify({ texts: Array.from({ length: 32 }, () => 'a '.repeat(10_000)) });
const sc = await timed(() => post('/v1/models/brown-lm-jr/score', texts));
console.log(`3. /score 32 × "a " × 10000 (${(texts.length / 1024).toFixed(0)} KB): ${sc.r.status} ${sc.r.headers.get('x-deq-error-code')} in ${sc.ms.toFixed(1)} ms: ${(await sc.r.json()).error}`);

const png = await sharp({ create: { width: 28, height: 28, channels: 3, background: 'white' } }).png().toBuffer();
const classifyP50 = async (n) => {
  const t = [];
  for (let i = 0; i < n; i++) { const x = await timed(() => post('/v1/models/fashion-mnist-jr/classify', png, 'image/png').then((r) => r.arrayBuffer())); t.push(x.ms); }
  return t.sort((x, y) => x - y)[n >> 1];
};
await classifyP50(5);
const alone = await classifyP50(21);
const long = timed(() => post('/v1/models/brown-lm-jr/score', JSON.stringify({ text: 'a '.repeat(10_000) })).then((r) => r.status));
const during = await classifyP50(21);
const l = await long;
console.log(`4. /classify p50 alone ${alone.toFixed(1)} ms; during a 312-window /score (${l.r}, ${l.ms.toFixed(0)} ms): ${during.toFixed(1)} ms`);
await s.close();
await rm(dir, { recursive: true, force: true });
