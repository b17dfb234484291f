// bench http --peer (issue #29): the report's comparison of a peer server (the FastAPI service) with
// deq-serve at the same load. The peer itself: test/peers/serve-fastapi.test.ts (npm run test:peers).
import { describe, expect, it } from 'vitest';
import { peerComparison, type BenchHttpReport, type BenchHttpRow } from '../../src/eval/bench-http.js';

const row = (mode: string, concurrency: number, rps: number, p50: number, p99: number): BenchHttpRow => ({
  mode, concurrency, rate: null, rps, units_per_s: 0, p50_ms: p50, p90_ms: p50, p95_ms: p99, p99_ms: p99,
  errors: 0, rejected: 0, requests: 100, classes: {}, server: { queue_ms: null, solve_ms: null, batch_rows: null }, server_info: null,
});
const report = (rows: BenchHttpRow[], peers = [{ name: 'fastapi', command: 'python serve_fastapi.py' }]): BenchHttpReport => ({
  machine: 'm', traffic: [], protocol: 'v2', limits: { duration_s: 1, max_requests: 1, warmup_requests: 0, timeout_ms: 1 }, rows, peers,
});

describe('bench http --peer: the peer against deq-serve', () => {
  it('gives each peer level as ratios to deq-serve at the same load, and says where the peer wins', () => {
    const lines = peerComparison(report([row('on', 1, 200, 4, 20), row('on', 16, 400, 40, 80), row('fastapi', 1, 250, 3, 10), row('fastapi', 16, 100, 160, 400)]));
    expect(lines).toContain('| fastapi | c=1 | 200.0 / 250.0 | 0.80× | 0.75× | 0.50× |');
    expect(lines).toContain('| fastapi | c=16 | 400.0 / 100.0 | 4.00× | 4.00× | 5.00× |');
    expect(lines).toContain('- fastapi beats deq-serve (on) at c=1 on throughput, p50 latency, p99 latency.');
    expect(lines.filter((l) => l.startsWith('- '))).toHaveLength(1);
  });

  it('says "nowhere" when deq-serve leads at every level, and adds nothing without peers', () => {
    expect(peerComparison(report([row('on', 1, 200, 4, 20), row('fastapi', 1, 100, 8, 40)]))).toContain('- Nowhere in this run.');
    expect(peerComparison(report([row('on', 1, 200, 4, 20)], []))).toEqual([]);
  });
});
