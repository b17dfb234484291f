import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postJson, startTestServer, type TestServer } from './helpers.js';

// The fixtures' manifests ask for max_iter 30; this server caps requests at 20.
let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ maxIterCap: 20 });
});
afterAll(async () => {
  await s?.cleanup();
});

const json = (r: Response): Promise<any> => r.json();

async function png(): Promise<Buffer> {
  return sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 20, g: 200, b: 90 } } }).png().toBuffer();
}

function classify(query: string): Promise<Response> {
  return png().then((body) => fetch(`${s.url}/v1/models/tiny-image/classify${query}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body }));
}

async function expectError(res: Response, status: number, code: string, ...mentions: string[]): Promise<void> {
  const b = await json(res);
  expect({ status: res.status, code: b.code }).toEqual({ status, code });
  for (const m of mentions) expect(b.error).toContain(m);
}

describe('one path for solver options (#9)', () => {
  it('clamps a manifest default above the server cap and shows the effective value', async () => {
    const m = await json(await fetch(`${s.url}/v1/models/tiny-image`));
    expect(m.solver_defaults).toMatchObject({ method: 'broyden', max_iter: 20, tol: 0.001, stop_mode: 'rel', history: 8 });
    expect(m.solver_defaults_clamped).toEqual(['max_iter: 30 → 20']);
    expect(m.caps.max_iter).toEqual([1, 20]);
  });

  it('runs a request that names no max_iter at the clamped default, not the manifest value', async () => {
    // Fixed-point iteration to an abs tolerance float32 never reaches: the cap decides the stop.
    const r = await json(await classify('?solver=fixed-point&tol=1e-8&stop_mode=abs'));
    expect(r.solver).toMatchObject({ method: 'fixed-point', max_iter: 20, iterations: 20, converged: false });
  });

  it('coerces query strings to the declared types and refuses out-of-range values naming the knob and its range', async () => {
    const ok = await json(await classify('?tol=0.5&max_iter=3&top_k=2'));
    expect(ok.solver).toMatchObject({ tol: 0.5, max_iter: 3 });
    expect(ok.labels).toHaveLength(2);
    await expectError(await classify('?max_iter=21'), 400, 'DEQ_ERR_INVALID_SOLVER_OPTION', 'max_iter', '[1, 20]', '21');
    await expectError(await classify('?tol=abc'), 400, 'DEQ_ERR_INVALID_SOLVER_OPTION', 'tol', '"abc"');
    await expectError(await classify('?top_k=0'), 400, 'DEQ_ERR_INVALID_INPUT', 'top_k');
  });

  it('refuses unknown query parameters on v1 routes, naming them (deadline=0 is not deadline_ms)', async () => {
    await expectError(await classify('?deadline=0'), 400, 'DEQ_ERR_INVALID_INPUT', '"deadline"');
    await expectError(await classify('?tol=0.1&maxiter=5'), 400, 'DEQ_ERR_INVALID_INPUT', '"maxiter"');
  });

  it('takes JSON bodies as typed: a string tol is refused, an unknown field is named', async () => {
    const score = (body: unknown) => postJson(`${s.url}/v1/models/tiny-lm/score`, body);
    await expectError(await score({ text: 'the man said .', tol: '1e-3' }), 400, 'DEQ_ERR_INVALID_SOLVER_OPTION', 'tol');
    await expectError(await score({ text: 'the man said .', deadline: 5 }), 400, 'DEQ_ERR_INVALID_INPUT', '"deadline"');
    const ok = await json(await score({ text: 'the man said that it was in the city .', max_iter: 20 }));
    expect(ok.solver.max_iter).toBe(20);
  });

  it('reads v2 solver parameters with the same ranges and lets other parameters through', async () => {
    const x = { name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data: new Array(64).fill(0.25) };
    const infer = (parameters: Record<string, unknown>) => postJson(`${s.url}/v2/models/tiny-image/infer`, { parameters, inputs: [x] });
    const bad = await infer({ max_iter: 21 });
    expect(bad.status).toBe(400);
    expect((await json(bad)).error).toContain('[1, 20]');
    const ok = await json(await infer({ max_iter: 5, client_tag: 'abc' }));
    expect(ok.parameters).toMatchObject({ max_iter: 5 });
  });
});
