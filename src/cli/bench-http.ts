import { parseArgs } from 'node:util';
import { benchHttp, parseTraffic } from '../eval/bench-http.js';
import { defaultPeersPython } from '../eval/bench-peers.js';
import { intFlag, numberFlag, usage } from './options.js';

export const BENCH_HTTP_USAGE = `deq-serve bench http [--url http://127.0.0.1:8080 | --compare [--modes on,off]]
                     [--traffic fashion-mnist-jr[?tol=1e-3],…] [--shares 1,1] [--protocol v1|v2]
                     [--concurrency 1,4,16,64] [--rates 20,50] [--duration 10] [--max-requests 5000]
                     [--warmup 20] [--timeout-ms 30000] [--data-dir DIR] [--models-dir DIR]
                     [--server-args "--workers 1 --threads 1"] [--json] [--out docs/results/http.md]
                     [--peer fastapi [--peers-python PATH] [--peer-threads 1]]

Load test of a running server (ours, or any speaking our /v1 or v2) with real payloads: Fashion-MNIST
test images as PNG (or v2 FP32 tensors) and Brown test-split sentences. Closed-loop concurrency levels,
then open-loop Poisson rates; every level is bounded by --duration and --max-requests. Reports p50, p90,
p95 and p99 latency, throughput, errors and 503s, per traffic class, plus the server's own queue / solve
/ batch-size split from its /metrics. --compare starts our server itself once per --modes entry
(\`serve --batching <mode>\`, on loopback ports, one after another) and measures each the same way.
--peer fastapi then starts the FastAPI + ONNX Runtime (Python) service of models/recipes/serve_fastapi.py
on the same --models-dir, from --peers-python (the venv of models/recipes/make-bench-venv.sh; default
~/.cache/deq-serve/bench-peers/bin/python) with --peer-threads ONNX Runtime threads, and measures it
the same way (--protocol v2: it speaks the v2 JSON tensor subset; image classifiers only).`;

/** Parses `deq-serve bench http …` and runs it; prints JSON with --json, else one line per level. */
export async function benchHttpCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      url: { type: 'string' }, compare: { type: 'boolean' }, modes: { type: 'string' }, traffic: { type: 'string' }, shares: { type: 'string' },
      protocol: { type: 'string' }, concurrency: { type: 'string' }, rates: { type: 'string' }, duration: { type: 'string' },
      'max-requests': { type: 'string' }, warmup: { type: 'string' }, 'timeout-ms': { type: 'string' }, 'data-dir': { type: 'string' },
      'models-dir': { type: 'string' }, 'server-args': { type: 'string' }, json: { type: 'boolean' }, out: { type: 'string' },
      peer: { type: 'string' }, 'peers-python': { type: 'string' }, 'peer-threads': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(BENCH_HTTP_USAGE + '\n');
    return 0;
  }
  const list = (v: string | undefined, fallback: string) => (v ?? fallback).split(',').map((x) => x.trim()).filter((x) => x !== '');
  const protocol = values.protocol ?? 'v1';
  if (protocol !== 'v1' && protocol !== 'v2') throw usage(`--protocol must be v1 or v2 (got "${protocol}")`);
  if (values.compare && values.url) throw usage('--compare starts its own servers; leave out --url');
  if (values.peer !== undefined && values.peer !== 'fastapi') throw usage(`--peer must be fastapi (got "${values.peer}")`);
  if (values.peer !== undefined && values.url) throw usage('--peer starts its own server next to ours; use it with --compare, not --url');
  if (values.peer !== undefined && protocol !== 'v2') throw usage('--peer fastapi speaks the v2 protocol only: add --protocol v2');
  const report = await benchHttp({
    url: values.url,
    modes: values.compare ? list(values.modes, 'on,off') : undefined,
    modelsDir: values['models-dir'],
    serverArgs: values['server-args']?.split(/\s+/).filter((x) => x !== ''),
    traffic: parseTraffic(list(values.traffic, 'fashion-mnist-jr'), values.shares === undefined ? undefined : list(values.shares, '').map((s) => numberFlag('--shares', s))),
    protocol,
    concurrency: values.concurrency === '' ? [] : list(values.concurrency, '1,4,16,64').map((c) => intFlag('--concurrency', c)),
    rates: values.rates === undefined || values.rates === '' ? [] : list(values.rates, '').map((r) => numberFlag('--rates', r)),
    limits: {
      durationS: values.duration === undefined ? 10 : numberFlag('--duration', values.duration),
      maxRequests: values['max-requests'] === undefined ? 5000 : intFlag('--max-requests', values['max-requests']),
      warmupRequests: values.warmup === undefined ? 20 : Number(values.warmup),
      timeoutMs: values['timeout-ms'] === undefined ? 30_000 : intFlag('--timeout-ms', values['timeout-ms']),
    },
    dataDir: values['data-dir'],
    out: values.out,
    peers: values.peer === undefined ? undefined : [{
      name: 'fastapi', python: values['peers-python'] ?? defaultPeersPython(),
      threads: values['peer-threads'] === undefined ? 1 : intFlag('--peer-threads', values['peer-threads']),
    }],
    // Progress lines: on stdout as the report itself, or on stderr when stdout carries --json.
    log: (line) => (values.json ? process.stderr : process.stdout).write(line + '\n'),
  });
  if (values.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  return report.rows.some((r) => r.requests === 0) ? 1 : 0;
}
