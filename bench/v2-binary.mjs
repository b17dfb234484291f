// JSON vs binary tensor extension for a batch-32 v2 image request (issue #13). Serves
// models/fashion-mnist-jr on loopback (one worker) and times N sequential requests of each
// kind, after a warm-up, with the same 32 images. Run after `npm run build`:
//   node bench/v2-binary.mjs [requests=30]
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig, startServer } from '../dist/server/index.js';

const N = Number(process.argv[2] ?? 30);
const BATCH = 32, PIXELS = 28 * 28;
const dir = await mkdtemp(join(tmpdir(), 'deq-bench-'));
await cp(resolve('models/fashion-mnist-jr'), join(dir, 'fashion-mnist-jr'), { recursive: true });
const server = await startServer(loadConfig([], {}, { modelsDir: dir, port: 0, host: '127.0.0.1', workers: 1, logLevel: 'silent', maxBatch: 32 }));
const url = `${server.url}/v2/models/fashion-mnist-jr/infer`;
try {
  // Deterministic "images": smooth patterns in the normalized input range.
  const x = Float32Array.from({ length: BATCH * PIXELS }, (_, i) => Math.sin(i * 0.37) * 1.5);
  const jsonBody = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [BATCH, 1, 28, 28], data: Array.from(x) }] });
  const head = Buffer.from(JSON.stringify({
    inputs: [{ name: 'x', datatype: 'FP32', shape: [BATCH, 1, 28, 28], parameters: { binary_data_size: x.byteLength } }],
    outputs: [{ name: 'logits', parameters: { binary_data: true } }],
  }));
  const binBody = Buffer.concat([head, Buffer.from(x.buffer)]);
  const kinds = {
    json: () => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: jsonBody }),
    binary: () => fetch(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length) }, body: binBody }),
  };
  const results = {};
  for (const [kind, send] of Object.entries(kinds)) {
    for (let i = 0; i < 3; i++) await (await send()).arrayBuffer();
    const times = [], solve = [];
    let respBytes = 0;
    for (let i = 0; i < N; i++) {
      const t0 = performance.now();
      const r = await send();
      const body = Buffer.from(await r.arrayBuffer());
      times.push(performance.now() - t0);
      if (r.status !== 200) throw new Error(`${kind}: HTTP ${r.status} ${body.toString().slice(0, 200)}`);
      respBytes = body.length;
      const n = Number(r.headers.get('inference-header-content-length') ?? body.length);
      solve.push(JSON.parse(body.subarray(0, n).toString()).parameters.solve_ms);
    }
    times.sort((a, b) => a - b); solve.sort((a, b) => a - b);
    const med = (a) => a[Math.floor(a.length / 2)];
    results[kind] = { request_bytes: kind === 'json' ? Buffer.byteLength(jsonBody) : binBody.length, response_bytes: respBytes, p50_ms: +med(times).toFixed(2), p90_ms: +times[Math.floor(times.length * 0.9)].toFixed(2), solve_p50_ms: +med(solve).toFixed(2) };
  }
  console.log(JSON.stringify({ batch: BATCH, requests: N, ...results }, null, 2));
} finally {
  await server.close();
  await rm(dir, { recursive: true, force: true });
}
