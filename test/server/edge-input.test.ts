// Regression tests for issue #22 defects 3–5: JSON depth bombs, errors outside the
// catalogue, and query booleans. Real HTTP on loopback, port 0.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, postJson, ROOT, startTestServer, type TestServer } from './helpers.js';
import { rawHttp, rawPost } from './raw-http.js';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({}, ['tiny-image', 'tiny-lm']);
});
afterAll(async () => {
  await s?.cleanup();
});

const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;

async function expectCode(r: Response, status: number, code: string): Promise<string> {
  const text = await r.text();
  expect(r.status, text.slice(0, 200)).toBe(status);
  expect(r.headers.get('x-deq-error-code')).toBe(code);
  return (JSON.parse(text) as { error: string }).error;
}

describe('JSON nesting depth (defect 3)', () => {
  it('a 5,000-deep array in a solver option gets 400 from the catalogue, not fastify\'s 500 "Maximum call stack size exceeded"', async () => {
    for (const field of ['tol', 'max_iter', 'deadline_ms']) {
      const r = await postJson(`${s.url}/v1/models/tiny-lm/score`, `{"text":"hi","${field}":${deep(5000)}}`);
      const msg = await expectCode(r, 400, 'DEQ_ERR_INVALID_INPUT');
      expect(msg).toMatch(/deeper than 32 levels/);
    }
    const v2 = await postJson(`${s.url}/v2/models/tiny-lm/infer`, `{"parameters":{"tol":${deep(5000)}},"inputs":[]}`);
    expect(await expectCode(v2, 400, 'DEQ_ERR_INVALID_INPUT')).toMatch(/deeper than 32/);
  });

  it('a deep array as the last value of v2 data gets 400, not 500 DEQ_ERR_INTERNAL', async () => {
    // The case on fashion-mnist was 783 zeros, then the array; tiny-image takes 8 × 8.
    const data = `[${'0,'.repeat(63)}${deep(5000)}]`;
    const r = await postJson(`${s.url}/v2/models/tiny-image/infer`, `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1,8,8],"data":${data}}]}`);
    await expectCode(r, 400, 'DEQ_ERR_INVALID_INPUT');
  });

  it('a 1 MiB depth bomb is refused by the scan, and the binary form is checked too', async () => {
    const r = await postJson(`${s.url}/v1/models/tiny-lm/score`, `{"text":"hi","tol":${deep(500_000)}}`);
    await expectCode(r, 400, 'DEQ_ERR_INVALID_INPUT');
    const json = Buffer.from(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1,8,8],"data":${deep(100)}}]}`);
    const b = await rawHttp(s.port, rawPost('/v2/models/tiny-image/infer', 'application/octet-stream', json, `Inference-Header-Content-Length: ${json.length}\r\n`));
    expect(b?.status).toBe(400);
    expect(JSON.parse(b!.body).error).toMatch(/JSON header .* deeper than 32/);
  });

  it('errors quote a short excerpt of client input, never all of it', async () => {
    // Within the depth limit, but the value is the wrong type: the message quotes at most ~40 characters.
    const nested = `[${'1,'.repeat(100_000)}${deep(20)}]`;
    const r = await postJson(`${s.url}/v1/models/tiny-lm/score`, `{"text":"hi","tol":${nested}}`);
    const msg = await expectCode(r, 400, 'DEQ_ERR_INVALID_SOLVER_OPTION');
    expect(msg.length).toBeLessThan(200);
    const d = `[${'0,'.repeat(63)}${deep(20)}]`;
    const v2 = await postJson(`${s.url}/v2/models/tiny-image/infer`, `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1,8,8],"data":${d}}]}`);
    const m2 = await expectCode(v2, 400, 'DEQ_ERR_INVALID_INPUT');
    expect(m2.length).toBeLessThan(200);
  });

  it('tensors nested as deep as their shape still work', async () => {
    const data = [[Array.from({ length: 8 }, () => Array.from({ length: 8 }, () => 0.5))]];
    const r = await postJson(`${s.url}/v2/models/tiny-image/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data }] });
    expect(r.status).toBe(200);
  });
});

describe('errors outside the catalogue (defect 4)', () => {
  it('a request without Host gets the catalogue\'s 400, not Node\'s bare one', async () => {
    const r = await rawHttp(s.port, 'GET /v2/health/live HTTP/1.1\r\nConnection: close\r\n\r\n');
    expect(r?.status).toBe(400);
    expect(r?.headers['x-deq-error-code']).toBe('DEQ_ERR_BAD_REQUEST');
    expect(JSON.parse(r!.body).error).toMatch(/Host header/);
    // HTTP/1.0 has no Host requirement.
    expect((await rawHttp(s.port, 'GET /v2/health/live HTTP/1.0\r\n\r\n'))?.status).toBe(200);
  });

  it('errors on application/octet-stream binary-extension bodies do not talk about application/json', async () => {
    for (const json of ['{"inputs":', '   ']) {
      const body = Buffer.from(json);
      const r = await rawHttp(s.port, rawPost('/v2/models/tiny-image/infer', 'application/octet-stream', body, `Inference-Header-Content-Length: ${body.length}\r\n`));
      expect(r?.status).toBe(400);
      expect(r?.headers['x-deq-error-code']).toBe('DEQ_ERR_INVALID_INPUT');
      const msg = JSON.parse(r!.body).error as string;
      expect(msg).not.toMatch(/application\/json/);
      expect(msg).toMatch(/JSON header/);
    }
  });
});

describe('query booleans (defect 5)', () => {
  const png = readFileSync(`${FIXTURES}hostile/ok.png`);
  const classify = (q: string) => fetch(`${s.url}/v1/models/tiny-image/classify?${q}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });

  it('takes true/false/1/0, and refuses anything else', async () => {
    for (const [q, has] of [['logits=1', true], ['logits=true', true], ['logits=0', false], ['logits=false', false]] as const) {
      const r = await classify(q);
      expect(r.status, q).toBe(200);
      expect('logits' in ((await r.json()) as object), q).toBe(has);
    }
    await expectCode(await classify('logits=yes'), 400, 'DEQ_ERR_INVALID_INPUT');
    await expectCode(await classify('logits=2'), 400, 'DEQ_ERR_INVALID_INPUT');
  });
});

describe('docs (defect 6)', () => {
  it('docs/reference/routes.md states the extensions /v2 lists', async () => {
    const { extensions } = (await (await fetch(`${s.url}/v2`)).json()) as { extensions: string[] };
    expect(extensions).toEqual(['binary_tensor_data']);
    const doc = readFileSync(`${ROOT}docs/reference/routes.md`, 'utf8');
    expect(doc).not.toMatch(/extensions` is `\[\]`/);
    expect(doc).toContain(`\`extensions: ${JSON.stringify(extensions).replace(/,/g, ', ')}\``);
  });
});
