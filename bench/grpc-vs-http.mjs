// OIP v2 over gRPC against HTTP/JSON and HTTP/binary (issue #26), for a batch-32 and a batch-1
// image request. Serves models/fashion-mnist-jr on loopback (one worker, gRPC on a free port)
// and times N sequential requests of each kind, after a warm-up, with the same images; the
// server's own solve time (parameters.solve_ms) is reported beside, so what is left is transport
// and encoding. Run after `npm run build`:
//   node bench/grpc-vs-http.mjs [requests=30]
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { loadConfig, startServer } from '../dist/server/index.js';

const N = Number(process.argv[2] ?? 30);
const PIXELS = 28 * 28;
const dir = await mkdtemp(join(tmpdir(), 'deq-bench-'));
await cp(resolve('models/fashion-mnist-jr'), join(dir, 'fashion-mnist-jr'), { recursive: true });
const server = await startServer(loadConfig([], {}, { modelsDir: dir, port: 0, grpcPort: 0, host: '127.0.0.1', workers: 1, logLevel: 'silent', maxBatch: 32 }));
const url = `${server.url}/v2/models/fashion-mnist-jr/infer`;
const definition = protoLoader.loadSync(resolve('vendor/open-inference-protocol/open_inference_grpc.proto'), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const { inference } = grpc.loadPackageDefinition(definition);
const client = new inference.GRPCInferenceService(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
const infer = (req) => new Promise((res, rej) => client.ModelInfer(req, (err, r) => (err ? rej(err) : res(r))));
const solveMs = (p) => p.solve_ms?.double_param ?? Number(p.solve_ms?.int64_param);

async function kinds(batch) {
  const x = Float32Array.from({ length: batch * PIXELS }, (_, i) => Math.sin(i * 0.37) * 1.5);
  const shape = [batch, 1, 28, 28];
  const jsonBody = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape, data: Array.from(x) }] });
  const head = Buffer.from(JSON.stringify({
    inputs: [{ name: 'x', datatype: 'FP32', shape, parameters: { binary_data_size: x.byteLength } }],
    outputs: [{ name: 'logits', parameters: { binary_data: true } }],
  }));
  const binBody = Buffer.concat([head, Buffer.from(x.buffer)]);
  const http = async (headers, body) => {
    const r = await fetch(url, { method: 'POST', headers, body });
    const b = Buffer.from(await r.arrayBuffer());
    if (r.status !== 200) throw new Error(`HTTP ${r.status} ${b.toString().slice(0, 200)}`);
    const n = Number(r.headers.get('inference-header-content-length') ?? b.length);
    return { bytes: b.length, solve: JSON.parse(b.subarray(0, n).toString()).parameters.solve_ms };
  };
  const raw = { model_name: 'fashion-mnist-jr', inputs: [{ name: 'x', datatype: 'FP32', shape }], raw_input_contents: [Buffer.from(x.buffer)] };
  const typed = { model_name: 'fashion-mnist-jr', inputs: [{ name: 'x', datatype: 'FP32', shape, contents: { fp32_contents: Array.from(x) } }] };
  return {
    http_json: () => http({ 'content-type': 'application/json' }, jsonBody),
    http_binary: () => http({ 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length) }, binBody),
    grpc_raw: async () => ({ solve: solveMs((await infer(raw)).parameters) }),
    grpc_typed: async () => ({ solve: solveMs((await infer(typed)).parameters) }),
  };
}

try {
  const out = { model: 'fashion-mnist-jr', requests: N, workers: 1, note: 'sequential requests on loopback; a shared, noisy machine unless stated otherwise' };
  for (const batch of [1, 32]) {
    const row = {};
    for (const [kind, send] of Object.entries(await kinds(batch))) {
      for (let i = 0; i < 3; i++) await send();
      const times = [], solve = [];
      for (let i = 0; i < N; i++) {
        const t0 = performance.now();
        const r = await send();
        times.push(performance.now() - t0);
        solve.push(r.solve);
      }
      times.sort((a, b) => a - b); solve.sort((a, b) => a - b);
      const med = (a) => a[Math.floor(a.length / 2)];
      row[kind] = { p50_ms: +med(times).toFixed(2), p90_ms: +times[Math.floor(times.length * 0.9)].toFixed(2), solve_p50_ms: +med(solve).toFixed(2) };
    }
    out[`batch_${batch}`] = row;
  }
  console.log(JSON.stringify(out, null, 2));
} finally {
  client.close();
  await server.close();
  await rm(dir, { recursive: true, force: true });
}
