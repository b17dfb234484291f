// Issue 23: the fixed-point response cache. Keys separate models, versions, input bytes and
// solver settings; the byte budget holds with LRU eviction; over HTTP a hit returns the stored
// answer and runs no solve (the solver's sample counter does not move).
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FixedPointCache } from '../../src/server/response-cache.js';
import type { PoolResult } from '../../src/server/pool.js';
import type { InferJob } from '../../src/server/protocol.js';
import { postJson, startTestServer, type TestServer } from './helpers.js';

const job = (over: Partial<InferJob> = {}, x = [1, 2, 3, 4]): InferJob => ({
  input: Float32Array.from(x), batch: 1, solver: { method: 'broyden', tol: 1e-3, stopMode: 'rel', maxIter: 30 }, deadline: 0, ...over,
});

function result(values: number): PoolResult {
  return {
    outputs: { logits: { type: 'float32', data: new Float32Array(values), dims: [1, values] } },
    solver: { iterations: Int32Array.of(3), residual: Float64Array.of(1e-4), converged: Uint8Array.of(1), diverged: Uint8Array.of(0), end: Uint8Array.of(1), calls: 3, stopped: false },
    options: { method: 'broyden', tol: 1e-3, stopMode: 'rel', maxIter: 30, patience: 0, predictionTol: 0.1, predictionMargin: 0 },
    timing: { injectMs: 0, solveMs: 1, cellMs: 1, headMs: 0, totalMs: 1 },
    queueMs: 0,
  };
}

describe('FixedPointCache keys', () => {
  const base = FixedPointCache.key('m', '1', job());
  it('are equal for equal requests and differ in model, version, input bytes, dtype, shape, outputs and every solver setting', () => {
    expect(FixedPointCache.key('m', '1', job())).toBe(base);
    const others = [
      FixedPointCache.key('other', '1', job()),
      FixedPointCache.key('m', '2', job()),
      FixedPointCache.key('m', '1', job({}, [1, 2, 3, 4.000001])),
      FixedPointCache.key('m', '1', job({ input: BigInt64Array.of(1n, 2n) })),
      FixedPointCache.key('m', '1', job({ batch: 2 })),
      FixedPointCache.key('m', '1', job({ length: 4 })),
      FixedPointCache.key('m', '1', job({ outputs: ['logits'] })),
      FixedPointCache.key('m', '1', job({ inputs: { x: Float32Array.of(1, 2, 3, 4) }, input: undefined })),
      ...[{ method: 'anderson' }, { tol: 1e-4 }, { stopMode: 'abs' }, { maxIter: 29 }, { patience: 3 }, { patience: 3, predictionTol: 0.2 }, { patience: 3, predictionMargin: 0.5 }]
        .map((s) => FixedPointCache.key('m', '1', job({ solver: { ...job().solver, ...s } as InferJob['solver'] }))),
    ];
    expect(new Set([base, ...others]).size).toBe(others.length + 1);
  });

  it('does not read past a typed array view: the same values in a bigger buffer give the same key', () => {
    const big = Float32Array.of(9, 1, 2, 3, 4, 9);
    expect(FixedPointCache.key('m', '1', job({ input: big.subarray(1, 5) }))).toBe(base);
  });
});

describe('FixedPointCache budget', () => {
  it('stays within its bytes, evicting the least recently used first', () => {
    const one = new FixedPointCache(1 << 20);
    one.put('a', 'm', result(10));
    const per = one.bytes;
    const c = new FixedPointCache(3 * per + 10);
    c.put('a', 'm', result(10));
    c.put('b', 'm', result(10));
    c.put('c', 'm', result(10));
    expect(c.size).toBe(3);
    expect(c.get('a')).toBeDefined(); // a is now the most recent: b goes first
    expect(c.put('d', 'n', result(10))).toEqual(['m']);
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBeDefined();
    expect(c.bytes).toBeLessThanOrEqual(c.maxBytes);
    expect(c.usage('m')).toEqual({ entries: 2, bytes: 2 * per });
    expect(c.usage('n').entries).toBe(1);
    // An answer bigger than the whole budget is not stored, and evicts nothing.
    expect(c.put('huge', 'm', result(1 << 20))).toEqual([]);
    expect(c.size).toBe(3);
  });

  it('is off at 0 bytes, and serves only the models named', () => {
    expect(new FixedPointCache(0).enabled('m')).toBe(false);
    const c = new FixedPointCache(1000, ['a']);
    expect(c.enabled('a')).toBe(true);
    expect(c.enabled('b')).toBe(false);
  });
});

async function png(g: number): Promise<Buffer> {
  return sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 20, g, b: 90 } } }).png().toBuffer();
}

const metric = (text: string, name: string, model: string) => Number(new RegExp(`^${name}\\{model="${model}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);

describe('the response cache over HTTP', () => {
  let s: TestServer;
  beforeAll(async () => { s = await startTestServer({ cacheBytes: 1 << 20, cacheModels: ['tiny-image'] }); });
  afterAll(async () => { await s?.cleanup(); });
  const classify = async (g: number, query = '') => (await fetch(`${s.url}/v1/models/tiny-image/classify?logits=true${query}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: await png(g) })).json() as Promise<any>;
  const metrics = async () => (await fetch(`${s.url}/metrics`)).text();

  it('a hit returns exactly the stored answer and runs no solve', async () => {
    const first = await classify(200);
    expect(first.solver.cached).toBeUndefined();
    const m0 = await metrics();
    const second = await classify(200);
    const m1 = await metrics();
    expect(second.solver.cached).toBe(true);
    expect(second.logits).toEqual(first.logits);
    expect(second.labels).toEqual(first.labels);
    expect(second.solver.iterations).toBe(first.solver.iterations);
    expect(metric(m1, 'deq_solver_samples_total', 'tiny-image')).toBe(metric(m0, 'deq_solver_samples_total', 'tiny-image'));
    expect(metric(m1, 'deq_cache_hits_total', 'tiny-image')).toBe(metric(m0, 'deq_cache_hits_total', 'tiny-image') + 1);
    expect(metric(m1, 'deq_cache_entries', 'tiny-image')).toBeGreaterThanOrEqual(1);
    expect(metric(m1, 'deq_cache_bytes', 'tiny-image')).toBeGreaterThan(0);
  });

  it('another image, other solver settings or a trace request miss, and solve', async () => {
    const m0 = await metrics();
    const other = await classify(120);
    const tol = await classify(200, '&tol=1e-4');
    const traced = await classify(200, '&trace=true');
    expect([other.solver.cached, tol.solver.cached, traced.solver.cached]).toEqual([undefined, undefined, undefined]);
    const m1 = await metrics();
    expect(metric(m1, 'deq_solver_samples_total', 'tiny-image') - metric(m0, 'deq_solver_samples_total', 'tiny-image')).toBe(3);
  });

  it('v2: a repeated request is a hit with the same outputs; other bytes are not', async () => {
    const body = (v: number) => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data: Array.from({ length: 64 }, (_, i) => Math.sin(i + v)) }] });
    const infer = async (v: number) => (await postJson(`${s.url}/v2/models/tiny-image/infer`, body(v))).json() as Promise<any>;
    const a = await infer(0.5);
    const b = await infer(0.5);
    const c = await infer(0.5000001);
    expect(a.parameters.cached).toBeUndefined();
    expect(b.parameters.cached).toBe(true);
    expect(b.outputs).toEqual(a.outputs);
    expect(c.parameters.cached).toBeUndefined();
  });

  it('a model the cache does not serve always solves', async () => {
    const body = { text: 'the man said .' };
    const m0 = await metrics();
    const a = await (await postJson(`${s.url}/v1/models/tiny-lm/score`, body)).json() as any;
    const b = await (await postJson(`${s.url}/v1/models/tiny-lm/score`, body)).json() as any;
    expect(b.solver.cached).toBeUndefined();
    expect(b.results[0].total_logprob).toBe(a.results[0].total_logprob);
    expect(metric(await metrics(), 'deq_solver_samples_total', 'tiny-lm')).toBeGreaterThan(metric(m0, 'deq_solver_samples_total', 'tiny-lm'));
  });
});
