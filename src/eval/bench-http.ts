import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { availableParallelism, cpus } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { DeqError } from '../errors.js';
import { readBrownSplits } from './brown-corpus.js';
import { readFashionMnist } from './fashion-mnist.js';
import { runLoad, type LoadLimits, type LoadResult, type LoadShape, type TrafficClass } from './load.js';
import { markdownTable } from './markdown-table.js';
import { barPlot, logPlot } from './svg-plot.js';

/** One kind of traffic on the command line: `model[?query]`, e.g. `fashion-mnist-jr?tol=1e-2`. */
export interface TrafficSpec {
  model: string;
  query: string;
  share: number;
}

export interface BenchHttpOptions {
  /** A running server (ours or any speaking our /v1 or v2); ignored with `modes`. */
  url?: string;
  /** Start our own server once per mode (`--batching <mode>`), one after another, on loopback. */
  modes?: string[];
  /** Folder of models for the servers we start. */
  modelsDir?: string;
  /** Extra `serve` flags for the servers we start. */
  serverArgs?: string[];
  traffic: TrafficSpec[];
  protocol: 'v1' | 'v2';
  concurrency: number[];
  rates: number[];
  limits: LoadLimits;
  /** Fashion-MNIST IDX folder for image payloads. */
  dataDir?: string;
  out?: string;
  log?: (line: string) => void;
  /** Other servers to start and measure the same way after ours (issue #29): e.g. the FastAPI peer. */
  peers?: HttpPeer[];
}

/** A peer HTTP server started from a Python interpreter (`--peer fastapi`). */
export interface HttpPeer {
  name: 'fastapi';
  python: string;
  /** ONNX Runtime intra-op threads per session. */
  threads: number;
}

const FASTAPI_PEER = fileURLToPath(new URL('../../models/recipes/serve_fastapi.py', import.meta.url));

export interface BenchHttpRow {
  mode: string;
  concurrency: number | null;
  rate: number | null;
  rps: number;
  units_per_s: number;
  p50_ms: number;
  p90_ms: number;
  p95_ms: number;
  p99_ms: number;
  errors: number;
  rejected: number;
  requests: number;
  classes: LoadResult['classes'];
  /** The server's own split over the level, from /metrics (means per request). */
  server: { queue_ms: number | null; solve_ms: number | null; batch_rows: number | null };
  /** The server's settings from its `deq_server_info` metric (null for a server without it). */
  server_info: Record<string, string> | null;
}

/** snake_case, as every machine-readable output of deq-serve. */
export interface BenchHttpReport {
  machine: string;
  traffic: TrafficSpec[];
  protocol: string;
  limits: { duration_s: number; max_requests: number; warmup_requests: number; timeout_ms: number };
  rows: BenchHttpRow[];
  /** The peer servers measured (their rows' mode is the peer's name) and how each was started. */
  peers?: { name: string; command: string }[];
}

/** Parses `model[?query]` items and their shares (equal when not given). */
export function parseTraffic(items: string[], shares?: number[]): TrafficSpec[] {
  if (shares && shares.length !== items.length) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `--shares has ${shares.length} values for ${items.length} --traffic items`);
  return items.map((item, i) => {
    const q = item.indexOf('?');
    const model = q === -1 ? item : item.slice(0, q);
    if (!/^[a-z0-9][a-z0-9._-]{0,127}$/.test(model)) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `--traffic: ${JSON.stringify(item)} does not start with a model name`);
    const share = shares ? shares[i] : 1;
    if (!(share > 0)) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `--shares: ${share} is not a positive number`);
    return { model, query: q === -1 ? '' : item.slice(q + 1), share };
  });
}

interface ModelInfo {
  task: string;
  preprocess?: { width: number; height: number; channels: number };
  inputs?: { name: string; datatype: string; shape: number[] }[];
}

/** Builds each class's requests from real payloads: Fashion-MNIST test images and Brown test sentences. */
async function trafficClasses(url: string, specs: TrafficSpec[], protocol: 'v1' | 'v2', dataDir?: string): Promise<TrafficClass[]> {
  const out: TrafficClass[] = [];
  let images: Awaited<ReturnType<typeof readFashionMnist>> | undefined;
  let sentences: string[] | undefined;
  for (const spec of specs) {
    const info = await modelInfo(url, spec.model, protocol);
    const name = spec.query ? `${spec.model}?${spec.query}` : spec.model;
    if (protocol === 'v1' && info.task === 'language-model') {
      sentences ??= await brownTestSentences(256);
      const params = Object.fromEntries(new URLSearchParams(spec.query));
      const bodies = sentences.map((text) => JSON.stringify({ text, ...numeric(params) }));
      out.push({
        name, share: spec.share,
        request: (k) => ({ method: 'POST', path: `/v1/models/${spec.model}/score`, headers: { 'content-type': 'application/json' }, body: bodies[k % bodies.length] }),
        units: (_s, body) => tokenCount(body),
      });
      continue;
    }
    images ??= await readFashionMnist('test', dataDir);
    const count = Math.min(images.count, 256);
    if (protocol === 'v1') {
      const p = info.preprocess;
      if (!p) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `${spec.model} is a ${info.task} model; --protocol v1 loads images and Brown text only`);
      const pngs: Buffer[] = [];
      for (let i = 0; i < count; i++) {
        const px = Buffer.from(images.images.subarray(i * 784, (i + 1) * 784));
        pngs.push(await sharp(px, { raw: { width: 28, height: 28, channels: 1 } }).resize(p.width, p.height).png().toBuffer());
      }
      const path = `/v1/models/${spec.model}/classify${spec.query ? `?${spec.query}` : ''}`;
      out.push({ name, share: spec.share, request: (k) => ({ method: 'POST', path, headers: { 'content-type': 'image/png' }, body: pngs[k % pngs.length] }) });
    } else {
      const input = info.inputs?.[0];
      if (!input || input.datatype !== 'FP32' || input.shape.slice(1).reduce((a, b) => a * b, 1) !== 784) {
        throw new DeqError('DEQ_ERR_CONFIG_INVALID', `${spec.model}: --protocol v2 sends 28×28 images as one FP32 input; the model takes ${JSON.stringify(info.inputs)}`);
      }
      const params = numeric(Object.fromEntries(new URLSearchParams(spec.query)));
      const bodies = Array.from({ length: count }, (_, i) => JSON.stringify({
        parameters: params,
        inputs: [{ name: input.name, datatype: 'FP32', shape: [1, ...input.shape.slice(1)], data: Array.from(images!.images.subarray(i * 784, (i + 1) * 784), (v) => v / 255) }],
      }));
      out.push({ name, share: spec.share, request: (k) => ({ method: 'POST', path: `/v2/models/${spec.model}/infer`, headers: { 'content-type': 'application/json' }, body: bodies[k % bodies.length] }) });
    }
  }
  return out;
}

async function modelInfo(url: string, model: string, protocol: 'v1' | 'v2'): Promise<ModelInfo> {
  const res = await fetch(`${url}${protocol === 'v1' ? '/v1/models/' : '/v2/models/'}${model}`);
  if (!res.ok) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `${url} has no model ${model} (HTTP ${res.status})`);
  const body = (await res.json()) as ModelInfo;
  return protocol === 'v1' ? body : { task: 'tensor', inputs: body.inputs };
}

/** The first sentences of the Brown test split (the one the LM never saw), as plain text. */
async function brownTestSentences(count: number): Promise<string[]> {
  const { test } = await readBrownSplits();
  const out: string[] = [];
  let cur: string[] = [];
  for (const t of test) {
    if (t === '</s>') {
      if (cur.length >= 3) out.push(cur.join(' '));
      cur = [];
      if (out.length === count) break;
    } else cur.push(t);
  }
  return out;
}

function numeric(params: Record<string, string>): Record<string, string | number> {
  return Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v]));
}

function tokenCount(body: string): number {
  try {
    const b = JSON.parse(body) as { results?: { token_count?: number }[] };
    return (b.results ?? []).reduce((a, r) => a + (r.token_count ?? 0), 0);
  } catch {
    return 0;
  }
}

/** Sums of a Prometheus metric's samples (every label set), e.g. `deq_queue_duration_seconds_sum`. */
export function metricTotal(text: string, name: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) total += v;
  }
  return total;
}

/** The labels of an `_info` metric (`name{a="1",b="x"} 1`), or null when the scrape has none. */
export function infoLabels(text: string, name: string): Record<string, string> | null {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`));
  if (!line) return null;
  const labels: Record<string, string> = {};
  for (const m of line.slice(name.length + 1, line.lastIndexOf('}')).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = m[2];
  return labels;
}

async function scrape(url: string): Promise<string> {
  try {
    const r = await fetch(`${url}/metrics`);
    return r.ok ? await r.text() : '';
  } catch {
    return '';
  }
}

/** Mean of a histogram over the interval between two scrapes, or null when it has no samples. */
function meanBetween(before: string, after: string, name: string, scale = 1): number | null {
  const n = metricTotal(after, `${name}_count`) - metricTotal(before, `${name}_count`);
  if (!(n > 0)) return null;
  return ((metricTotal(after, `${name}_sum`) - metricTotal(before, `${name}_sum`)) / n) * scale;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Starts `deq-serve serve` in a child process on a loopback port and waits for readiness. */
async function startServer(mode: string, opts: BenchHttpOptions): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const main = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  const args = [main, 'serve', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn', '--batching', mode,
    ...(opts.modelsDir ? ['--models-dir', opts.modelsDir] : []), ...(opts.serverArgs ?? [])];
  return startChild(process.execPath, args, port, `the server for mode ${mode}`);
}

/** Starts a peer server (models/recipes/serve_fastapi.py) on a loopback port; records how in `started`. */
async function startPeer(peer: HttpPeer, opts: BenchHttpOptions, started: { name: string; command: string }[]): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const args = [FASTAPI_PEER, '--host', '127.0.0.1', '--port', String(port), '--models-dir', opts.modelsDir ?? 'models', '--threads', String(peer.threads)];
  started.push({ name: peer.name, command: `${peer.python} ${args.join(' ').replace(` --port ${port}`, '')}` });
  return startChild(peer.python, args, port, `the ${peer.name} peer`);
}

async function startChild(command: string, args: string[], port: number, what: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const child: ChildProcess = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `${what} exited (${child.exitCode}): ${stderr}`);
    const ready = await fetch(`${url}/v2/health/ready`).then((r) => r.ok, () => false);
    if (ready) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new DeqError('DEQ_ERR_CONFIG_INVALID', `${what} was not ready within 120 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const stop = () => new Promise<void>((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
  return { url, stop };
}

/**
 * `deq-serve bench http`: closed-loop concurrency levels and open-loop Poisson rates
 * against a server, with real payloads, per-class latency percentiles from HDR
 * histograms, and the server's own queue/solve/batch split from /metrics. With
 * `modes`, starts our server once per batching mode and measures each in turn.
 */
export async function benchHttp(opts: BenchHttpOptions): Promise<BenchHttpReport> {
  const log = opts.log ?? (() => {});
  const rows: BenchHttpRow[] = [];
  const peers = opts.peers ?? [];
  const targets: (string | HttpPeer | undefined)[] = [...(opts.modes?.length ? opts.modes : peers.length ? [] : [undefined]), ...peers];
  const started: { name: string; command: string }[] = [];
  for (const target of targets) {
    const peer = typeof target === 'object' ? target : undefined;
    const mode = peer ? peer.name : (target as string | undefined);
    if (mode !== undefined) log(peer ? `starting the ${peer.name} peer …` : `starting deq-serve --batching ${mode} …`);
    const t0 = performance.now();
    const server = peer ? await startPeer(peer, opts, started)
      : mode === undefined ? { url: opts.url ?? 'http://127.0.0.1:8080', stop: async () => {} } : await startServer(mode, opts);
    if (mode !== undefined) log(`ready at ${server.url} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    try {
      const classes = await trafficClasses(server.url, opts.traffic, opts.protocol, opts.dataDir);
      const shapes: LoadShape[] = [
        ...opts.concurrency.map((c): LoadShape => ({ mode: 'closed', concurrency: c })),
        ...opts.rates.map((r): LoadShape => ({ mode: 'open', rate: r })),
      ];
      for (const shape of shapes) {
        const before = await scrape(server.url);
        const r = await runLoad(server.url, classes, shape, opts.limits);
        const after = await scrape(server.url);
        const row: BenchHttpRow = {
          mode: mode ?? 'external',
          concurrency: shape.mode === 'closed' ? shape.concurrency : null,
          rate: shape.mode === 'open' ? shape.rate : null,
          rps: r.rps, units_per_s: r.units_per_s,
          p50_ms: r.p50_ms, p90_ms: r.p90_ms, p95_ms: r.p95_ms, p99_ms: r.p99_ms,
          errors: r.errors, rejected: r.rejected, requests: r.requests, classes: r.classes,
          server: {
            queue_ms: meanBetween(before, after, 'deq_queue_duration_seconds', 1000),
            solve_ms: meanBetween(before, after, 'deq_solve_duration_seconds', 1000),
            batch_rows: meanBetween(before, after, 'deq_batch_rows'),
          },
          server_info: infoLabels(after, 'deq_server_info'),
        };
        rows.push(row);
        log(`${row.mode} ${shape.mode === 'closed' ? `c=${shape.concurrency}` : `rate=${shape.rate}/s`}: ${row.rps.toFixed(1)} req/s, p50 ${row.p50_ms.toFixed(1)} ms, p99 ${row.p99_ms.toFixed(1)} ms, ${row.errors} errors, ${row.rejected} rejected`);
      }
    } finally {
      await server.stop();
    }
  }
  const l = opts.limits;
  const limits = { duration_s: l.durationS, max_requests: l.maxRequests, warmup_requests: l.warmupRequests, timeout_ms: l.timeoutMs };
  const report: BenchHttpReport = { machine: machine(), traffic: opts.traffic, protocol: opts.protocol, limits, rows, ...(started.length ? { peers: started } : {}) };
  if (opts.out) await writeReports(report, opts.out);
  return report;
}

function machine(): string {
  return `${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, Node ${process.version}`;
}

/**
 * With peers: each peer level against deq-serve's (the first mode measured) at the same load, as
 * ratios, and every level where the peer wins said plainly. Empty without peers.
 */
export function peerComparison(r: BenchHttpReport): string[] {
  const peers = new Set((r.peers ?? []).map((p) => p.name));
  const ours = r.rows.find((x) => !peers.has(x.mode))?.mode;
  if (!peers.size || ours === undefined) return [];
  const load = (x: BenchHttpRow) => (x.concurrency !== null ? `c=${x.concurrency}` : `${x.rate}/s`);
  const rows: string[][] = [];
  const wins: string[] = [];
  for (const x of r.rows.filter((row) => peers.has(row.mode))) {
    const d = r.rows.find((y) => y.mode === ours && y.concurrency === x.concurrency && y.rate === x.rate);
    if (!d) continue;
    const rps = d.rps / x.rps, p50 = x.p50_ms / d.p50_ms, p99 = x.p99_ms / d.p99_ms;
    rows.push([x.mode, load(x), `${d.rps.toFixed(1)} / ${x.rps.toFixed(1)}`, `${rps.toFixed(2)}×`, `${p50.toFixed(2)}×`, `${p99.toFixed(2)}×`]);
    const beat = [rps < 1 ? 'throughput' : '', p50 < 1 ? 'p50 latency' : '', p99 < 1 ? 'p99 latency' : ''].filter((w) => w);
    if (beat.length) wins.push(`- ${x.mode} beats deq-serve (${ours}) at ${load(x)} on ${beat.join(', ')}.`);
  }
  if (!rows.length) return [];
  return [
    '', `Against deq-serve (mode ${ours}) at the same load; above 1× deq-serve is ahead (req/s: deq-serve / peer; latency: peer / deq-serve):`, '',
    ...markdownTable(['peer', 'load', 'req/s deq-serve / peer', 'throughput ratio', 'p50 ratio', 'p99 ratio'], rows),
    '', 'Where a peer wins:', '', ...(wins.length ? wins : ['- Nowhere in this run.']),
  ];
}

const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e'];

/** The Markdown table and the latency/throughput SVG beside it. */
async function writeReports(r: BenchHttpReport, out: string): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  const svg = basename(out).replace(/\.md$/, '') + '.svg';
  const modes = [...new Set(r.rows.map((x) => x.mode))];
  const closed = (m: string) => r.rows.filter((x) => x.mode === m && x.concurrency !== null);
  await writeFile(join(dirname(out), svg), logPlot(
    modes.map((m, i) => ({ label: m, color: COLORS[i % COLORS.length], x: closed(m).map((x) => x.rps), values: closed(m).map((x) => x.p99_ms) })),
    'p99 latency against throughput (closed-loop concurrency sweep)', 'requests per second', 'p99 latency (ms)',
  ));
  const f = (x: number | null, d = 1) => (x === null ? '–' : x.toFixed(d));
  const classNames = Object.keys(r.rows[0]?.classes ?? {});
  const load = (x: BenchHttpRow) => (x.concurrency !== null ? `c=${x.concurrency}` : `${x.rate}/s`);
  // Mixed traffic is read per model: one bar per class in every run, beside the blended line plot.
  const classSvg = basename(out).replace(/\.md$/, '') + '-classes.svg';
  if (classNames.length > 1) {
    await writeFile(join(dirname(out), classSvg), barPlot(
      r.rows.map((x) => ({ label: `${x.mode} ${load(x)}`, bars: classNames.map((c) => ({ low: x.classes[c].p50_ms, high: x.classes[c].p99_ms })) })),
      classNames.map((c, i) => ({ label: c, color: COLORS[i % COLORS.length] })),
      'Latency per model in mixed traffic', 'latency (ms)', { low: 'p50', high: 'p99' },
    ));
  }
  const lines = [
    '| mode | load | req/s | units/s | p50 ms | p90 ms | p95 ms | p99 ms | errors | 503 | server queue ms | server solve ms | batch rows |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...r.rows.map((x) => `| ${x.mode} | ${x.concurrency !== null ? `c=${x.concurrency}` : `${x.rate}/s`} | ${f(x.rps)} | ${f(x.units_per_s)} | ${f(x.p50_ms)} | ${f(x.p90_ms)} | ${f(x.p95_ms)} | ${f(x.p99_ms)} | ${x.errors} | ${x.rejected} | ${f(x.server.queue_ms, 2)} | ${f(x.server.solve_ms, 2)} | ${f(x.server.batch_rows, 2)} |`),
  ];
  if (classNames.length > 1) {
    lines.push('', 'Per traffic class (p50 / p99 ms):', '', `| mode | load | ${classNames.join(' | ')} |`, `|---|---|${classNames.map(() => '---').join('|')}|`);
    for (const x of r.rows) lines.push(`| ${x.mode} | ${load(x)} | ${classNames.map((c) => `${f(x.classes[c].p50_ms)} / ${f(x.classes[c].p99_ms)}`).join(' | ')} |`);
    lines.push('', `![p50 and p99 latency per model](${classSvg})`);
  }
  // What each server ran with, from its own deq_server_info (the same for every level of a mode).
  const settings = modes.map((m) => {
    const info = r.rows.find((x) => x.mode === m)?.server_info;
    const peer = r.peers?.find((p) => p.name === m);
    const text = info ? Object.entries(info).map(([k, v]) => `${k.replaceAll('_', ' ')} ${v}`).join(', ') : peer ? `peer, started as \`${peer.command}\`` : 'not reported';
    return `- ${m}: ${text}`;
  });
  lines.push(...peerComparison(r));
  const md = `# HTTP load: ${r.traffic.map((t) => `${t.model}${t.query ? `?${t.query}` : ''} (share ${t.share})`).join(', ')}

Measured by \`deq-serve bench http\` (${r.protocol} protocol) on ${r.machine}. Each level runs for at most
${r.limits.duration_s} s or ${r.limits.max_requests} requests after ${r.limits.warmup_requests} warm-up requests. Latency is from the intended send
time (open loop: Poisson arrivals) or the send (closed loop), HDR histograms; "units" are tokens scored for /score.

Server settings (its \`deq_server_info\` metric):
${settings.join('\n')}

${lines.join('\n')}

![p99 latency against throughput](${svg})
`;
  await writeFile(out, md);
}
