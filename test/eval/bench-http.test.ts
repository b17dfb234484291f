import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchHttp, infoLabels, metricTotal, parseTraffic } from '../../src/eval/bench-http.js';
import { FASHION_MNIST_SLICE } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../server/helpers.js';

let s: TestServer;
let out: string;
beforeAll(async () => {
  s = await startTestServer({ workers: 1 });
  out = await mkdtemp(join(tmpdir(), 'bench-http-'));
});
afterAll(async () => {
  await s?.cleanup();
  await rm(out, { recursive: true, force: true });
});

describe('deq-serve bench http', () => {
  it('parses traffic classes and shares, refusing malformed ones', () => {
    expect(parseTraffic(['tiny-image?tol=1e-2', 'tiny-lm'], [3, 1])).toEqual([
      { model: 'tiny-image', query: 'tol=1e-2', share: 3 },
      { model: 'tiny-lm', query: '', share: 1 },
    ]);
    expect(() => parseTraffic(['../etc'])).toThrow(/model name/);
    expect(() => parseTraffic(['a', 'b'], [1])).toThrow(/--shares/);
    expect(() => parseTraffic(['a'], [0])).toThrow(/positive/);
  });

  it('sums a Prometheus metric over its label sets', () => {
    const text = '# HELP x\nx_sum{model="a"} 1.5\nx_sum{model="b"} 2\nx_sum_other 9\nx_count 3\n';
    expect(metricTotal(text, 'x_sum')).toBe(3.5);
    expect(metricTotal(text, 'x_count')).toBe(3);
  });

  it('reads the labels of an _info metric', () => {
    const text = '# HELP deq_server_info x\ndeq_server_info_total 3\ndeq_server_info{workers="2",batching="on",note="a \\"b\\""} 1\n';
    expect(infoLabels(text, 'deq_server_info')).toEqual({ workers: '2', batching: 'on', note: 'a \\"b\\"' });
    expect(infoLabels('x 1\n', 'deq_server_info')).toBeNull();
  });

  it('runs bounded closed and open loops with real payloads and reports per class and the server split', async () => {
    const report = await benchHttp({
      url: s.url,
      traffic: parseTraffic(['tiny-image', 'tiny-image?tol=1e-2', 'tiny-lm']),
      protocol: 'v1',
      concurrency: [2],
      rates: [20],
      limits: { durationS: 1, maxRequests: 30, warmupRequests: 3, timeoutMs: 10_000 },
      dataDir: FASHION_MNIST_SLICE,
      out: join(out, 'http.md'),
    });
    expect(report.rows.map((r) => [r.mode, r.concurrency, r.rate])).toEqual([['external', 2, null], ['external', null, 20]]);
    // Machine-readable output is snake_case throughout, the limits included.
    expect(report.limits).toEqual({ duration_s: 1, max_requests: 30, warmup_requests: 3, timeout_ms: 10_000 });
    for (const r of report.rows) {
      expect(r.requests).toBeGreaterThan(0);
      expect(r.requests).toBeLessThanOrEqual(30);
      expect(r.errors + r.rejected).toBe(0);
      expect(r.p50_ms).toBeGreaterThan(0);
      expect(r.p50_ms).toBeLessThanOrEqual(r.p99_ms);
      expect(r.server.solve_ms).toBeGreaterThan(0);
      expect(Object.keys(r.classes)).toEqual(['tiny-image', 'tiny-image?tol=1e-2', 'tiny-lm']);
      const sum = Object.values(r.classes).reduce((a, c) => a + c.requests, 0);
      expect(sum).toBe(r.requests);
    }
    // Tokens scored by the language model count as units.
    expect(report.rows.some((r) => r.units_per_s > 0)).toBe(true);
    // The server says what it ran with: the test server has one worker, batching as configured.
    const { config } = s.state;
    for (const r of report.rows) expect(r.server_info).toEqual({ workers: '1', intra_op_threads: String(config.intraOpThreads), batching: config.batching, solver_kernel: config.solverKernel, providers: config.providers.join(',') });
    const md = await readFile(join(out, 'http.md'), 'utf8');
    expect(md).toContain('| external | c=2 |');
    expect(md).toContain(`- external: workers 1, intra op threads ${config.intraOpThreads}, batching ${config.batching}`);
    expect(await readFile(join(out, 'http.svg'), 'utf8')).toMatch(/^<svg/);
    // Three classes: a per-model chart with one bar pair per class in each of the two runs, linked from the report.
    const perClass = await readFile(join(out, 'http-classes.svg'), 'utf8');
    expect(perClass.match(/fill-opacity="0.3"/g)).toHaveLength(2 * 3);
    for (const c of ['tiny-image', 'tiny-image?tol=1e-2', 'tiny-lm', 'external c=2', 'external 20/s']) expect(perClass).toContain(`>${c}<`);
    expect(md).toContain('![p50 and p99 latency per model](http-classes.svg)');
  }, 60_000);

  it('v2: sends FP32 tensors', async () => {
    const report = await benchHttp({
      url: s.url, traffic: parseTraffic(['tiny-image']), protocol: 'v2', concurrency: [1], rates: [],
      limits: { durationS: 0.5, maxRequests: 5, warmupRequests: 0, timeoutMs: 10_000 }, dataDir: FASHION_MNIST_SLICE,
    }).catch((e: Error) => e);
    // tiny-image takes 8×8 inputs; the v2 load sends 28×28 images and must say so rather than send garbage.
    expect(report).toBeInstanceOf(Error);
    expect((report as Error).message).toContain('28×28');
  });
});
