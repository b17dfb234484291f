// Issue #26: the model repository API (Triton's extension) with zero-downtime reload. Each
// test bundle is tiny-image with a head of its own whose logits are [v, 0, 0], v its version:
// an answer says which version computed it, so a request that mixed versions would show.
import { createHash } from 'node:crypto';
import { cp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeModel } from '../../src/runtime/onnx-proto.js';
import { loadConfig } from '../../dist/server/index.js';
import { FIXTURES, lmInferBody, NEVER_CONVERGES, poolEvent, postJson, startTestServer, until, type TestServer } from './helpers.js';

const KEY = 'repository-test-key-0123456789';
const AUTH = { authorization: `Bearer ${KEY}` };
/* eslint-disable @typescript-eslint/no-explicit-any */
const json = (r: Response): Promise<any> => r.json();

/** Writes tiny-image version `v` into `dir` (a head whose logits are [v, 0, 0]); `corrupt`: a head whose bytes fail the manifest's sha256. */
async function writeVersion(dir: string, v: number, corrupt = false): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await cp(join(FIXTURES, 'tiny-image'), dir, { recursive: true });
  const head = encodeModel({
    name: `head-v${v}`,
    inputs: [{ name: 'z', dtype: 'float32', shape: ['B', 4, 4, 4] }],
    outputs: [{ name: 'logits', dtype: 'float32', shape: ['B', 3] }],
    nodes: [
      { op: 'Flatten', inputs: ['z'], outputs: ['flat'], attrs: { axis: 1 } },
      { op: 'MatMul', inputs: ['flat', 'w'], outputs: ['zero'] },
      { op: 'Add', inputs: ['zero', 'b'], outputs: ['logits'] },
    ],
    initializers: [
      { name: 'w', dtype: 'float32', dims: [64, 3], values: new Array(192).fill(0) },
      { name: 'b', dtype: 'float32', dims: [3], values: [v, 0, 0] },
    ],
  });
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  manifest.version = String(v);
  manifest.graphs.head.sha256 = createHash('sha256').update(head).digest('hex');
  if (corrupt) head[head.length - 1] ^= 0xff;
  await writeFile(join(dir, 'head.onnx'), head);
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
}

const X = { name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data: new Array(64).fill(0.25) };

let s: TestServer | undefined;
afterEach(async () => {
  await s?.cleanup();
  s = undefined;
});

async function start(overrides: Record<string, unknown> = {}): Promise<TestServer & { dir: string }> {
  s = await startTestServer({ modelControl: 'explicit', apiKeys: [KEY], workers: 1, ...overrides }, ['tiny-image', 'tiny-lm']);
  const dir = s.state.config.modelsDir;
  await writeVersion(join(dir, 'tiny-image'), 1);
  // The fixture's own tiny-image was loaded at startup: load version 1 of ours over it.
  expect((await postJson(`${s.url}/v2/repository/models/tiny-image/load`, {}, AUTH)).status).toBe(200);
  return Object.assign(s, { dir });
}

/** One v2 request: the version the response names and the version that computed its logits. */
async function infer(url: string): Promise<{ status: number; named?: string; computed?: number }> {
  const r = await postJson(`${url}/v2/models/tiny-image/infer`, { inputs: [X] }, AUTH);
  if (r.status !== 200) return { status: r.status };
  const b = await json(r);
  return { status: 200, named: b.model_version, computed: b.outputs[0].data[0] };
}

describe('model repository API', () => {
  it('is off by default, and needs API keys when on', async () => {
    s = await startTestServer({}, ['tiny-image']);
    expect((await postJson(`${s.url}/v2/repository/index`, {})).status).toBe(404);
    expect(() => loadConfig([], {}, { modelControl: 'explicit' })).toThrow(/--api-keys/);
  });

  it('lists bundles and states, behind the API key', async () => {
    const t = await start();
    expect((await postJson(`${t.url}/v2/repository/index`, {})).status).toBe(401);
    const index = await json(await postJson(`${t.url}/v2/repository/index`, {}, AUTH));
    expect(index).toEqual([{ name: 'tiny-image', version: '1', state: 'READY' }, { name: 'tiny-lm', version: '1', state: 'READY' }]);
    // tritonclient's form: no Content-Type, no body.
    const bare = await fetch(`${t.url}/v2/repository/index`, { method: 'POST', headers: AUTH });
    expect(bare.status).toBe(200);
    expect((await json(await postJson(`${t.url}/v2/repository/models/tiny-image/load`, {}, AUTH))).changed).toBe(false); // unchanged: no reload
    expect((await json(await fetch(`${t.url}/v2`, { headers: AUTH }))).extensions).toContain('model_repository');
  });

  it('a reload under load loses no request and mixes no versions; metrics and /v2/models follow', async () => {
    const t = await start();
    expect(await infer(t.url)).toEqual({ status: 200, named: '1', computed: 1 });
    let stop = false;
    const seen: Awaited<ReturnType<typeof infer>>[] = [];
    const clients = Array.from({ length: 4 }, async () => {
      while (!stop) seen.push(await infer(t.url));
    });
    await until(async () => seen.length >= 10);
    await writeVersion(join(t.dir, 'tiny-image'), 2);
    const load = await postJson(`${t.url}/v2/repository/models/tiny-image/load`, {}, AUTH);
    expect(load.status).toBe(200);
    expect(await json(load)).toMatchObject({ name: 'tiny-image', version: '2', state: 'READY', changed: true });
    const afterSwap = seen.length;
    await until(async () => seen.length >= afterSwap + 10);
    stop = true;
    await Promise.all(clients);
    expect(seen.every((r) => r.status === 200), JSON.stringify(seen.filter((r) => r.status !== 200))).toBe(true);
    for (const r of seen) expect(Number(r.named)).toBe(r.computed); // never version 1's manifest with version 2's graphs, or back
    expect(seen.some((r) => r.computed === 1) && seen.some((r) => r.computed === 2)).toBe(true);
    expect(seen.slice(afterSwap + 4).every((r) => r.computed === 2)).toBe(true); // requests sent after the swap answered all go to 2
    expect((await json(await fetch(`${t.url}/v2/models/tiny-image`, { headers: AUTH }))).versions).toEqual(['2']);
    const metrics = await (await fetch(`${t.url}/metrics`, { headers: AUTH })).text();
    expect(metrics).toMatch(/deq_model_loaded\{model="tiny-image",version="2"\} 1/);
    expect(metrics).not.toMatch(/deq_model_loaded\{model="tiny-image",version="1"\}/);
    expect(metrics).toMatch(/deq_model_loads_total\{model="tiny-image",result="loaded"\} 2/);
  }, 60_000);

  it('a request in flight during a reload finishes on the version it started on', async () => {
    const t = await start({ onDeadline: 'best-effort', maxIterCap: 100_000 });
    const dispatched = poolEvent(t, 'dispatch', 'tiny-lm');
    // A solve that runs to its 6 s deadline on version 1, while version 2 is loaded and swapped in.
    const slow = postJson(`${t.url}/v2/models/tiny-lm/infer`, lmInferBody(1, 8, { ...NEVER_CONVERGES, deadline_ms: 6000 }), AUTH);
    await dispatched;
    const manifest = JSON.parse(await readFile(join(t.dir, 'tiny-lm', 'manifest.json'), 'utf8'));
    await writeFile(join(t.dir, 'tiny-lm', 'manifest.json'), JSON.stringify({ ...manifest, version: '2' }));
    const load = await postJson(`${t.url}/v2/repository/models/tiny-lm/load`, {}, AUTH);
    expect(load.status).toBe(200);
    const fresh = await json(await postJson(`${t.url}/v2/models/tiny-lm/infer`, lmInferBody(1, 4), AUTH));
    expect(fresh.model_version).toBe('2');
    expect(t.state.pool.inFlight('tiny-lm')).toBe(1); // the swap happened while the old request ran
    const old = await slow;
    expect(old.status).toBe(200);
    const body = await json(old);
    expect(body.model_version).toBe('1');
    // it ran its whole course, to its deadline or (on a fast machine) its iteration cap, not cut by the swap
    const p = body.parameters;
    expect(p.deadline_exceeded === true || p.iterations === p.max_iter, JSON.stringify(p)).toBe(true);
    expect(p.converged).toBe(false);
  }, 60_000);

  it('refuses a corrupt bundle with the reason, in the response and the log, while the old version keeps serving', async () => {
    const t = await start();
    await writeVersion(join(t.dir, 'tiny-image'), 3, true);
    const r = await postJson(`${t.url}/v2/repository/models/tiny-image/load`, {}, AUTH);
    expect(r.status).toBe(400);
    expect(r.headers.get('x-deq-error-code')).toBe('DEQ_ERR_MODEL_LOAD_FAILED');
    const e = await json(r);
    expect(e.error).toMatch(/head\.onnx/);
    expect(e.error).toMatch(/sha256|checksum/i);
    expect(e.error).toMatch(/version 1 keeps serving/);
    expect(await infer(t.url)).toEqual({ status: 200, named: '1', computed: 1 });
    const index = await json(await postJson(`${t.url}/v2/repository/index`, {}, AUTH));
    expect(index[0]).toMatchObject({ name: 'tiny-image', version: '1', state: 'READY' });
    expect(index[0].reason).toMatch(/load failed/);
    const metrics = await (await fetch(`${t.url}/metrics`, { headers: AUTH })).text();
    expect(metrics).toMatch(/deq_model_loads_total\{model="tiny-image",result="failed"\} 1/);
    // Fixed on disk: the next load takes it.
    await writeVersion(join(t.dir, 'tiny-image'), 3);
    expect((await postJson(`${t.url}/v2/repository/models/tiny-image/load`, {}, AUTH)).status).toBe(200);
    expect(await infer(t.url)).toEqual({ status: 200, named: '3', computed: 3 });
  }, 60_000);

  it('unload waits for in-flight requests, then the model is gone from routes, index and metrics', async () => {
    const t = await start({ onDeadline: 'best-effort', maxIterCap: 100_000 });
    const dispatched = poolEvent(t, 'dispatch', 'tiny-lm');
    const slow = postJson(`${t.url}/v2/models/tiny-lm/infer`, lmInferBody(1, 8, { ...NEVER_CONVERGES, deadline_ms: 1500 }), AUTH).then(async (r) => ({ status: r.status, at: Date.now() }));
    await dispatched;
    const unload = postJson(`${t.url}/v2/repository/models/tiny-lm/unload`, {}, AUTH).then(async (r) => ({ status: r.status, at: Date.now() }));
    const [a, b] = await Promise.all([slow, unload]);
    expect(a.status).toBe(200); // the in-flight request finished, on the model being unloaded
    expect(b.status).toBe(200);
    expect(b.at).toBeGreaterThanOrEqual(a.at);
    expect((await fetch(`${t.url}/v2/models/tiny-lm`, { headers: AUTH })).status).toBe(404);
    expect((await postJson(`${t.url}/v2/models/tiny-lm/infer`, lmInferBody(1, 4), AUTH)).status).toBe(404);
    const index = await json(await postJson(`${t.url}/v2/repository/index`, {}, AUTH));
    expect(index.find((e: any) => e.name === 'tiny-lm')).toMatchObject({ state: 'UNAVAILABLE', reason: 'unloaded' });
    const metrics = await (await fetch(`${t.url}/metrics`, { headers: AUTH })).text();
    expect(metrics).not.toMatch(/deq_model_loaded\{model="tiny-lm"/);
    expect(metrics).not.toMatch(/deq_inflight_requests\{model="tiny-lm"/);
    expect((await json(await fetch(`${t.url}/v1/models`, { headers: AUTH }))).models.map((m: any) => m.name)).toEqual(['tiny-image']);
    // and back
    expect((await postJson(`${t.url}/v2/repository/models/tiny-lm/load`, {}, AUTH)).status).toBe(200);
    expect((await postJson(`${t.url}/v2/models/tiny-lm/infer`, lmInferBody(1, 4), AUTH)).status).toBe(200);
  }, 60_000);

  it('poll mode loads a changed bundle and unloads a removed one by itself', async () => {
    const t = await start({ modelControl: 'poll', repositoryPollMs: 200 });
    await writeVersion(join(t.dir, 'tiny-image'), 4);
    await until(async () => (await infer(t.url)).computed === 4, 20_000);
    await rm(join(t.dir, 'tiny-lm'), { recursive: true });
    await until(async () => (await fetch(`${t.url}/v2/models/tiny-lm`, { headers: AUTH })).status === 404, 20_000);
  }, 60_000);
});
