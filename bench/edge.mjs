// HTTP-edge attack figures for docs/reliability.md (issue #22). Run after `npm run build`:
//   node bench/edge.mjs [path/to/dist]     (another build, e.g. of the code before #22, to compare)
// Serves the shipped fashion-mnist-jr at the default settings (one worker) in a child
// process, so its RSS is the server's alone, and attacks it from loopback:
//  1. stalled uploads: 100 sockets send image/png with Content-Length 10 MiB, then 10 MiB
//     minus one byte, then stall: server RSS before / peak / after, and the answers;
//  2. depth bombs: 4 clients send 1 MiB `{"parameters":{"tol":[[[…]]]}}` to v2 infer for
//     10 s; liveness p50 / max meanwhile; then the same with flat 1 MiB arrays;
//  3. idle connections: 3,000 sockets that send nothing; how many the server keeps,
//     whether liveness answers, and how long the silent ones live.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = resolve(process.argv[2] ?? fileURLToPath(new URL('../dist', import.meta.url)));
const dir = await mkdtemp(join(tmpdir(), 'deq-edge-'));
await cp(fileURLToPath(new URL('../models/fashion-mnist-jr', import.meta.url)), join(dir, 'fashion-mnist-jr'), { recursive: true });
// A script file, not --eval: the solver workers inherit the process's exec arguments.
await writeFile(join(dir, 'serve.mjs'), `
  const { loadConfig, startServer } = await import(${JSON.stringify(`${dist}/server/index.js`)});
  const s = await startServer(loadConfig([], {}, { port: 0, modelsDir: ${JSON.stringify(dir)}, workers: 1, logLevel: 'silent' }));
  console.log('READY ' + s.port);
`);
const child = spawn(process.execPath, [join(dir, 'serve.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise((ok) => { let out = ''; child.stdout.on('data', (d) => { out += d; const m = /READY (\d+)/.exec(out); if (m) ok(Number(m[1])); }); });
const rssMb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) / 1024;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const live = async () => { const t0 = performance.now(); try { const r = await fetch(`http://127.0.0.1:${port}/v2/health/live`, { signal: AbortSignal.timeout(5000) }); await r.arrayBuffer(); return r.status === 200 ? performance.now() - t0 : Infinity; } catch { return Infinity; } };
console.log(`dist: ${dist}`);

// 1. stalled uploads
{
  const body = Buffer.alloc((10 << 20) - 1, 0x41);
  const before = rssMb();
  const t0 = Date.now();
  const answers = [];
  const socks = Array.from({ length: 100 }, () => {
    const s = net.connect(port, '127.0.0.1');
    let text = '';
    s.on('data', (d) => { text += d.toString('latin1'); const m = /^HTTP\/1\.1 (\d{3})/.exec(text); if (m && !s.answered) { s.answered = true; answers.push({ status: Number(m[1]), s: (Date.now() - t0) / 1000 }); } });
    s.on('error', () => {});
    s.on('connect', () => { s.write(`POST /v1/models/fashion-mnist-jr/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: ${10 << 20}\r\n\r\n`); s.write(body); });
    return s;
  });
  let peak = before;
  while (Date.now() - t0 < 8000) { peak = Math.max(peak, rssMb()); await sleep(100); }
  while (answers.length < 100 && Date.now() - t0 < 95_000) { peak = Math.max(peak, rssMb()); await sleep(250); }
  const after = rssMb();
  for (const s of socks) s.destroy();
  const by = {};
  for (const a of answers) (by[a.status] ??= []).push(a.s);
  const summary = Object.entries(by).map(([k, v]) => `${v.length} × ${k} (at ${Math.min(...v).toFixed(1)}–${Math.max(...v).toFixed(1)} s)`).join(', ');
  console.log(`1. stalled uploads: RSS ${before.toFixed(0)} → peak ${peak.toFixed(0)} → ${after.toFixed(0)} MB once answered; ${summary || 'none'}; ${100 - answers.length} unanswered after ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

// 2. depth bombs vs flat arrays
for (const [name, payload] of [['depth bomb', `{"inputs":[],"parameters":{"tol":${'['.repeat(500_000)}${']'.repeat(500_000)}}}`], ['flat array', `{"inputs":[],"parameters":{"tol":[${'0,'.repeat(499_999)}0]}}`]]) {
  let stop = false;
  const costs = [];
  const statuses = {};
  const client = async () => {
    while (!stop) {
      const t0 = performance.now();
      const r = await fetch(`http://127.0.0.1:${port}/v2/models/fashion-mnist-jr/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: payload });
      await r.arrayBuffer();
      costs.push(performance.now() - t0);
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    }
  };
  const clients = Array.from({ length: 4 }, client);
  const probes = [];
  const t0 = Date.now();
  while (Date.now() - t0 < 10_000) { probes.push(await live()); await sleep(50); }
  stop = true;
  await Promise.all(clients);
  console.log(`2. ${name} (${(payload.length / 2 ** 20).toFixed(2)} MiB), 4 clients × 10 s: ${costs.length} requests ${JSON.stringify(statuses)}, each p50 ${pct(costs, 0.5).toFixed(0)} ms; liveness p50 ${pct(probes, 0.5).toFixed(0)} ms, max ${Math.max(...probes).toFixed(0)} ms (${probes.length} probes)`);
}

// 3. idle connections
{
  const socks = [];
  let closed = 0;
  const t0 = Date.now();
  const closedAt = [];
  for (let i = 0; i < 3000; i += 100) {
    await Promise.all(Array.from({ length: 100 }, () => new Promise((ok) => {
      const s = net.connect(port, '127.0.0.1', ok);
      s.on('error', ok);
      s.on('close', () => { closed++; closedAt.push((Date.now() - t0) / 1000); ok(); });
      socks.push(s);
    })));
  }
  await sleep(500);
  const probes = [];
  for (let i = 0; i < 10; i++) probes.push(await live());
  const openNow = socks.length - closed;
  while (closed < socks.length && Date.now() - t0 < 45_000) await sleep(200);
  const answered = probes.filter(Number.isFinite).length;
  console.log(`3. 3,000 idle connections: ${openNow} still open after 0.5 s; liveness ${answered}/10 answered (max ${Math.max(...probes.filter(Number.isFinite), 0).toFixed(0)} ms); ${closed} closed by the server within ${((Date.now() - t0) / 1000).toFixed(0)} s, the last at ${Math.max(0, ...closedAt).toFixed(1)} s`);
  for (const s of socks) s.destroy();
}

child.kill('SIGKILL');
await rm(dir, { recursive: true, force: true });
