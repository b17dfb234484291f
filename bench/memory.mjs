// RSS before and after one large /score request, per ONNX Runtime memory setting.
// Run after `npm run build`:   node bench/memory.mjs [variant…]
// Variants: batchN = /score solves N windows per worker call (--score-batch),
// arena-off / pattern-off = ONNX Runtime's CPU arena / memory patterns off.
// Each runs in its own process (node --expose-gc) serving models/brown-lm-jr on
// one worker. Printed: RSS (MB) before, peak, after the big request + GC, and after
// 21 more small ones; the big request's time; the small request's p50 before/after.
import { spawn } from 'node:child_process';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const VARIANTS = {
  batch64: { ortMemArena: true, ortMemPattern: true, scoreBatch: 64 },
  'batch64-arena-off': { ortMemArena: false, ortMemPattern: true, scoreBatch: 64 },
  'batch64-arena-off-pattern-off': { ortMemArena: false, ortMemPattern: false, scoreBatch: 64 },
  batch8: { ortMemArena: true, ortMemPattern: true, scoreBatch: 8 },
  batch4: { ortMemArena: true, ortMemPattern: true, scoreBatch: 4 },
  batch2: { ortMemArena: true, ortMemPattern: true, scoreBatch: 2 },
  'batch2-arena-off': { ortMemArena: false, ortMemPattern: false, scoreBatch: 2 },
};
const BIG = 'a '.repeat(10_000); // 20,000 characters: the longest text /score takes by default
const SMALL = 'the jury said it did find that the city executive committee had over-all charge of the election and deserves the praise and thanks of the city';

if (process.argv[2] === '--child') {
  const { loadConfig, startServer } = await import('../dist/server/index.js');
  const overrides = JSON.parse(process.argv[4]);
  const config = loadConfig([], {}, { port: 0, modelsDir: process.argv[3], workers: 1, logLevel: 'silent', ...overrides });
  const server = await startServer(config);
  const rss = () => { global.gc(); return process.memoryUsage().rss / 2 ** 20; };
  const score = async (text) => {
    const t0 = performance.now();
    const r = await fetch(`${server.url}/v1/models/brown-lm-jr/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }) });
    if (r.status !== 200) throw new Error(`status ${r.status}: ${await r.text()}`);
    await r.arrayBuffer();
    return performance.now() - t0;
  };
  const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
  const small = async () => { const t = []; for (let i = 0; i < 21; i++) t.push(await score(SMALL)); return median(t); };
  await small();
  const smallBefore = await small();
  const before = rss();
  let peak = before;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss / 2 ** 20); }, 20);
  const bigMs = await score(BIG);
  clearInterval(sampler);
  await new Promise((r) => setTimeout(r, 500));
  const after = rss();
  const smallAfter = await small();
  const after2 = rss();
  console.log(JSON.stringify({ before: Math.round(before), peak: Math.round(peak), after: Math.round(after), afterSmall: Math.round(after2), bigMs: Math.round(bigMs), smallMs: [+smallBefore.toFixed(1), +smallAfter.toFixed(1)] }));
  await server.close();
  process.exit(0);
}

const dir = await mkdtemp(join(tmpdir(), 'deq-mem-'));
await cp(resolve(fileURLToPath(new URL('../models/brown-lm-jr', import.meta.url))), join(dir, 'brown-lm-jr'), { recursive: true });
const names = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(VARIANTS);
for (const name of names) {
  const out = await new Promise((res, rej) => {
    const c = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', dir, JSON.stringify(VARIANTS[name])], { stdio: ['ignore', 'pipe', 'inherit'] });
    let s = '';
    c.stdout.on('data', (d) => { s += d; });
    c.on('exit', (code) => (code === 0 ? res(s.trim()) : rej(new Error(`${name} exited ${code}`))));
  });
  console.log(`${name.padEnd(24)} ${out}`);
}
await rm(dir, { recursive: true, force: true });
