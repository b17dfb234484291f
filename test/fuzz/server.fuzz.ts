// Fuzz suite (issue #12): generated hostile requests against a real server on
// loopback, plus the crafted corpus in test/fixtures/hostile/. Run with
// `npm run test:fuzz` (not part of `npm test`; .ci/run runs it after the suite).
// FUZZ_RUNS (default 1000) sets the cases per endpoint, FUZZ_SEED the seed.
// After every case: an answer (no reset), no 5xx other than a 504 the request
// asked for with deadline_ms, every error in the catalogue's shape, and
// liveness under 250 ms (one of three probes; slow first probes are counted). At the end: ready, RSS bounded, answers unchanged.
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import fc from 'fast-check';
import sharp from 'sharp';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE } from '../../dist/errors.js';
import { FIXTURES, ROOT, startTestServer, type TestServer } from '../server/helpers.js';
import { multipartBody, rawHttp, rawPost, type RawResponse } from '../server/raw-http.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 1000);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const LIVENESS_MS = 250;
const HOSTILE = `${FIXTURES}hostile/`;
const corpus = readdirSync(HOSTILE).filter((f) => !f.endsWith('.mjs') && !f.startsWith('.')).map((f) => ({ name: f, bytes: readFileSync(`${HOSTILE}${f}`) }));

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let s: TestServer;
let rssStart = 0;
let baseline: { label: string; logprob: number };
const counts: Record<string, { cases: number; statuses: Record<string, number> }> = {};
let worstLiveness = 0;
let slowFirstProbes = 0;
let seeds: Buffer[] = [];

async function normalAnswers(): Promise<{ label: string; logprob: number }> {
  const img = await rawHttp(s.port, rawPost('/v1/models/tiny-image/classify', 'image/png', corpusFile('ok.png')));
  const txt = await fetch(`${s.url}/v1/models/tiny-lm/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'the of and to a in is was' }) });
  expect(img?.status).toBe(200);
  expect(txt.status).toBe(200);
  return { label: JSON.parse(img!.body).label, logprob: ((await txt.json()) as { results: { total_logprob: number }[] }).results[0].total_logprob };
}

function corpusFile(name: string): Buffer {
  return corpus.find((c) => c.name === name)!.bytes;
}

beforeAll(async () => {
  // A body shorter than its Content-Length (odd headers) is answered after --body-timeout-ms.
  s = await startTestServer({ workers: 1, maxIterCap: 2000, requestTimeoutMs: 10_000, bodyTimeoutMs: 1000 }, ['tiny-image', 'tiny-lm']);
  const base = sharp({ create: { width: 12, height: 10, channels: 3, background: { r: 0, g: 0, b: 0 }, noise: { type: 'gaussian', mean: 120, sigma: 50 } } });
  seeds = [
    await base.clone().png().toBuffer(), await base.clone().jpeg().toBuffer(), await base.clone().gif().toBuffer(),
    await base.clone().webp().toBuffer(), await base.clone().tiff().toBuffer(), await base.clone().avif().toBuffer(),
  ];
  baseline = await normalAnswers();
  gc();
  rssStart = process.memoryUsage().rss;
});

afterAll(async () => {
  const report = { seed: SEED, runsPerEndpoint: RUNS, worstLivenessMs: Math.round(worstLiveness), slowFirstProbes, rssStartMb: Math.round(rssStart / 2 ** 20), rssEndMb: Math.round(process.memoryUsage().rss / 2 ** 20), endpoints: counts };
  mkdirSync(`${ROOT}.test-results`, { recursive: true });
  writeFileSync(`${ROOT}.test-results/fuzz-report.json`, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`fuzz: seed ${SEED}, ${Object.entries(counts).map(([k, v]) => `${k} ${v.cases}`).join(', ')}; worst liveness ${Math.round(worstLiveness)} ms, ${slowFirstProbes} first probe(s) over ${LIVENESS_MS} ms`);
  await s?.cleanup();
});

/** The checks after every case. `asked504`: the request set deadline_ms, so a 504 is an honest answer. */
async function check(endpoint: string, r: RawResponse | null, v2: boolean | 'parsed', asked504 = false): Promise<void> {
  const c = (counts[endpoint] ??= { cases: 0, statuses: {} });
  c.cases++;
  expect(r, 'an HTTP answer, not a reset or a hang').not.toBeNull();
  const status = r!.status;
  c.statuses[status] = (c.statuses[status] ?? 0) + 1;
  if (status >= 500) expect(asked504 && status === 504, `unexpected ${status}: ${r!.body.slice(0, 200)}`).toBe(true);
  if (status >= 400) {
    const code = r!.headers['x-deq-error-code'];
    expect(Object.hasOwn(ERROR_CATALOGUE, code ?? ''), `code ${code} for ${status}: ${r!.body.slice(0, 200)}`).toBe(true);
    expect(ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE].status).toBe(status);
    const body = JSON.parse(r!.body);
    // 'parsed': a v2 path, but Node's parser may refuse the request before any route is known (then v1's shape).
    const parserError = v2 === 'parsed' && r!.headers['x-request-id'] === undefined;
    expect(body).toEqual(v2 && !parserError ? { error: expect.any(String) } : { error: expect.any(String), code });
  }
  expect(r!.headers['x-content-type-options']).toBe('nosniff');
  // The case has been answered; a slow probe now is either work the case left
  // behind or the shared box not scheduling us. Two more probes tell them apart:
  // the case fails only if all three are slow. Slow first probes are counted.
  let best = Infinity;
  for (let probe = 0; probe < 3 && best >= LIVENESS_MS; probe++) {
    const t0 = performance.now();
    const live = await fetch(`${s.url}/v2/health/live`);
    await live.arrayBuffer();
    expect(live.status).toBe(200);
    const ms = performance.now() - t0;
    if (probe === 0) {
      worstLiveness = Math.max(worstLiveness, ms);
      if (ms >= LIVENESS_MS) slowFirstProbes++;
    }
    best = Math.min(best, ms);
  }
  expect(best, 'liveness').toBeLessThan(LIVENESS_MS);
}

const params = { numRuns: RUNS, seed: SEED, endOnFailure: true };
const post = (path: string, type: string | null, body: Buffer | string, extra = '') => rawHttp(s.port, rawPost(path, type, Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8'), extra), { timeoutMs: 15_000 });

// ---- generators ----

const mediaTypes = fc.constantFrom(
  'image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/tiff', 'image/avif', 'image/svg+xml', 'image/png; charset=binary', 'IMAGE/PNG',
  'image/png;', 'application/json', 'text/plain', 'application/octet-stream', 'multipart/form-data', 'image', '', ';;;', 'image/<x>', null,
);

/** An image's bytes with `flips` random bit flips, or cut at `cut` (fraction), or a corpus file. */
const imageBytes = fc.oneof(
  fc.tuple(fc.nat({ max: 5 }), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 7 })), { minLength: 1, maxLength: 8 })).map(([i, flips]) => {
    const b = Buffer.from(seeds[i]);
    for (const [at, bit] of flips) b[at % b.length] ^= 1 << bit;
    return b;
  }),
  fc.tuple(fc.nat({ max: 5 }), fc.double({ min: 0, max: 1, noNaN: true })).map(([i, cut]) => seeds[i].subarray(0, Math.floor(seeds[i].length * cut))),
  fc.tuple(fc.nat({ max: 5 }), fc.nat({ max: 0xffff }), fc.nat({ max: 0xffff })).map(([i, w, h]) => {
    // Huge or zero declared dimensions in a PNG header (offsets 16 and 20), a GIF's (6 and 8).
    const b = Buffer.from(seeds[i]);
    if (i === 0) { b.writeUInt32BE(w * 977, 16); b.writeUInt32BE(h * 977, 20); }
    if (i === 2) { b.writeUInt16LE(w, 6); b.writeUInt16LE(h, 8); }
    return b;
  }),
  fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)),
  fc.constantFrom(...corpus.map((c) => c.bytes)),
);

const words = fc.constantFrom('the', 'of', 'and', 'a', 'was', 'said', 'xyzzy', 'ünïcödé', '日本語', '\u0000', '\u202e', '\ud800', '<script>', '\t', '\r\n', '😀');
const text = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.array(words, { maxLength: 300 }).map((w) => w.join(' ')),
  fc.tuple(words, fc.integer({ min: 1000, max: 12_000 })).map(([w, n]) => `${w} `.repeat(n)),
  fc.constant(''),
);
const solverValue = fc.oneof(fc.constantFrom('broyden', 'anderson', 'fixed-point', 'rel', 'abs', 'NaN', 'Infinity', '1e-3', '-1', ''), fc.double(), fc.integer(), fc.boolean(), fc.constant(null));
const solverParams = fc.record({ tol: solverValue, max_iter: solverValue, solver: solverValue, stop_mode: solverValue, deadline_ms: solverValue }, { requiredKeys: [] });
const deepNesting = fc.integer({ min: 10, max: 20_000 }).map((d) => `${'['.repeat(d)}${']'.repeat(d)}`);

describe('fuzz: generated hostile requests', () => {
  it('POST /v1/models/tiny-image/classify, raw bodies', async () => {
    await fc.assert(fc.asyncProperty(imageBytes, mediaTypes, async (bytes, type) => {
      await check('classify raw', await post('/v1/models/tiny-image/classify', type, bytes), false);
    }), params);
  }, 600_000);

  it('POST /v1/models/tiny-image/classify, multipart variants and query values', async () => {
    const part = fc.record({
      name: fc.constantFrom('image', 'file', 'note', '', 'image"', 'x'.repeat(300)),
      filename: fc.option(fc.constantFrom('a.png', '', '../../etc/passwd', 'ä.gif'), { nil: undefined }),
      type: fc.option(fc.constantFrom('image/png', 'text/plain', 'application/json'), { nil: undefined }),
      body: fc.oneof(imageBytes, fc.string({ maxLength: 64 }).map((x) => Buffer.from(x))),
    });
    const query = fc.oneof(
      fc.constant(''),
      fc.dictionary(fc.constantFrom('top_k', 'tol', 'max_iter', 'solver', 'stop_mode', 'deadline_ms', 'x', '__proto__'), fc.string({ maxLength: 30 }), { maxKeys: 4 })
        .map((q) => `?${new URLSearchParams(q).toString()}`),
      fc.constantFrom('?top_k=%ff', '?tol=1e999', '?top_k=99999999999999999999', '?max_iter=-1&max_iter=2', '?&&&=', `?x=${'a'.repeat(3000)}`),
    );
    await fc.assert(fc.asyncProperty(fc.array(part, { maxLength: 4 }), fc.boolean(), fc.nat({ max: 100 }), fc.constantFrom('b0undary', 'x', 'a'.repeat(70)), query,
      async (parts, close, cutPercent, boundary, q) => {
        let body = multipartBody(boundary, parts, close);
        if (cutPercent < 20) body = body.subarray(0, Math.floor(body.length * cutPercent / 20));
        const asked = /deadline_ms/.test(q);
        await check('classify multipart', await post(`/v1/models/tiny-image/classify${q}`, `multipart/form-data; boundary=${boundary}`, body), false, asked);
      }), params);
  }, 600_000);

  it('POST /v1/models/tiny-lm/score', async () => {
    const body = fc.oneof(
      // Without solver settings half the time, so texts reach tokenizing and the window budget.
      text.chain((t) => fc.oneof(fc.constant({}), solverParams).map((p) => JSON.stringify({ text: t, ...p }))),
      fc.array(text, { maxLength: 40 }).chain((texts) => fc.oneof(fc.constant({}), solverParams).map((p) => JSON.stringify({ texts, ...p }))),
      fc.anything({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? 'null'),
      fc.jsonValue({ maxDepth: 6 }).map((v) => JSON.stringify({ text: v })),
      deepNesting.map((n) => `{"texts": ${n}}`),
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.concat([Buffer.from('{"text": "'), Buffer.from(a), Buffer.from('"}')])),
      fc.constantFrom('{"text": NaN}', '{"text": "a", "tol": 1e999}', '{"text": "a"', '', 'null', '[]', '{"text":"a","text":"b"}', '{"__proto__": {"text": "a"}}'),
    );
    await fc.assert(fc.asyncProperty(body, fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'APPLICATION/JSON'), async (b, type) => {
      const asked = /deadline_ms/.test(typeof b === 'string' ? b : b.toString('latin1'));
      await check('score', await post('/v1/models/tiny-lm/score', type, b), false, asked);
    }), params);
  }, 600_000);

  it('POST /v2/models/{name}/infer', async () => {
    const number = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(1e39, -1e39, 1e300, -3.4e38, 3.4028235e38, 5e-324), fc.constant('NaN'), fc.constant(null));
    const tensor = fc.record({
      name: fc.constantFrom('x', 'tokens', 'targets', 'image', '<b>', ''),
      datatype: fc.constantFrom('FP32', 'INT64', 'FP16', 'BYTES', 'fp32', ''),
      shape: fc.oneof(fc.array(fc.integer({ min: -2, max: 70 }), { maxLength: 5 }), fc.constantFrom([1, 1, 8, 8], [2, 1, 8, 8], [1, 4], [2, 16], [1, 17], [65, 1])),
      data: fc.oneof(fc.array(number, { maxLength: 300 }), fc.array(fc.array(number, { maxLength: 8 }), { maxLength: 16 }), fc.array(fc.nat({ max: 25 }), { minLength: 64, maxLength: 64 })),
    }, { requiredKeys: ['name', 'datatype', 'shape', 'data'] });
    const body = fc.oneof(
      fc.record({
        id: fc.option(fc.string({ maxLength: 300 }), { nil: undefined }),
        parameters: fc.option(solverParams, { nil: undefined }),
        inputs: fc.array(tensor, { maxLength: 3 }),
        outputs: fc.option(fc.array(fc.record({ name: fc.constantFrom('logits', 'logprobs', 'target_logprobs', 'topk_ids', 'nope') }), { maxLength: 3 }), { nil: undefined }),
      }, { requiredKeys: ['inputs'] }).map((v) => JSON.stringify(v)),
      fc.anything({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? 'null'),
      deepNesting.map((n) => `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ${n}}]}`),
      fc.integer({ min: 1, max: 120_000 }).map((n) => `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": [${'0,'.repeat(n)}0]}]}`),
    );
    await fc.assert(fc.asyncProperty(fc.constantFrom('tiny-image', 'tiny-lm', 'nope'), body, async (model, b) => {
      await check('v2 infer', await post(`/v2/models/${model}/infer`, 'application/json', b), true, /deadline_ms/.test(b));
    }), params);
  }, 600_000);

  it('GET model routes with hostile names', async () => {
    const name = fc.oneof(
      fc.string({ maxLength: 80 }).map((x) => encodeURIComponent(x)),
      fc.string({ unit: 'binary', maxLength: 40 }).map((x) => encodeURIComponent(x)),
      fc.constantFrom('..%2f..%2fetc%2fpasswd', '%2e%2e', '%ff', '%', '%00', 'tiny-image%00', 'TINY-IMAGE', 'a'.repeat(201), 'tiny-image/../tiny-lm', '<script>', '%3cscript%3e'),
    );
    const route = fc.constantFrom('/v1/models/', '/v2/models/', '/v2/models/{}/ready', '/v2/models/{}/infer');
    await fc.assert(fc.asyncProperty(route, name, async (r, n) => {
      const path = r.includes('{}') ? r.replace('{}', n) : `${r}${n}`;
      const res = await rawHttp(s.port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`, { timeoutMs: 5000 });
      await check('model names', res, path.startsWith('/v2'));
      if (res && res.status >= 400) expect(res.body).not.toMatch(/[<>]/);
    }), params);
  }, 600_000);

  // Issue #22: depth bombs in every JSON field (solver options, tensor data after valid
  // values, the binary form's JSON header), as arrays, objects or both, up to ~1 MiB.
  it('depth bombs in JSON bodies', async () => {
    const bomb = fc.tuple(fc.integer({ min: 20, max: 400_000 }), fc.constantFrom('[]', '{}', 'mixed')).map(([d, kind]) => {
      if (kind === '[]') return `${'['.repeat(d)}${']'.repeat(d)}`;
      if (kind === '{}') { const n = Math.min(d, 60_000); return `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`; }
      const n = Math.min(d, 60_000);
      return `${'[{"a":'.repeat(n)}1${'}]'.repeat(n)}`;
    });
    const where = fc.constantFrom('score tol', 'score max_iter', 'score deadline_ms', 'score text', 'score texts', 'v2 parameters.tol', 'v2 data', 'v2 data after values', 'v2 binary header', 'v2 outputs', 'unclosed');
    await fc.assert(fc.asyncProperty(where, bomb, async (w, b) => {
      const infer = (json: string) => post('/v2/models/tiny-image/infer', 'application/json', json);
      let r: RawResponse | null;
      if (w.startsWith('score')) r = await post('/v1/models/tiny-lm/score', 'application/json', `{"text":"the of and",${JSON.stringify(w.slice(6))}:${b}}`.replace('"text":"the of and","text":', '"text":'));
      else if (w === 'v2 parameters.tol') r = await infer(`{"parameters":{"tol":${b}},"inputs":[{"name":"x","datatype":"FP32","shape":[1,1,8,8],"data":[${'0,'.repeat(63)}0]}]}`);
      else if (w === 'v2 data') r = await infer(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1,8,8],"data":${b}}]}`);
      else if (w === 'v2 data after values') r = await infer(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1,8,8],"data":[${'0,'.repeat(63)}${b}]}]}`);
      else if (w === 'v2 outputs') r = await infer(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1,8,8],"data":[${'0,'.repeat(63)}0]}],"outputs":${b}}`);
      else if (w === 'unclosed') r = await post('/v1/models/tiny-lm/score', 'application/json', `{"text":${'['.repeat(b.length / 2)}`);
      else {
        const json = Buffer.from(`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1,8,8],"parameters":{"binary_data_size":256},"data":${b}}]}`);
        r = await post('/v2/models/tiny-image/infer', 'application/octet-stream', Buffer.concat([json, Buffer.alloc(256)]), `Inference-Header-Content-Length: ${json.length}\r\n`);
      }
      await check('depth bombs', r, w.startsWith('v2'));
      if (r && r.body.length > 0) expect(r.body.length, 'an error never quotes the bomb back').toBeLessThan(1000);
    }), { ...params, numRuns: Math.max(20, Math.round(RUNS / 4)) });
  }, 600_000);

  // Issue #22: missing, doubled and odd headers, written as raw bytes.
  it('missing or odd headers', async () => {
    const png = corpusFile('ok.png');
    const line = fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/1.1', 'HTTP/1.1');
    const host = fc.constantFrom(['Host: 127.0.0.1'], [], ['Host: 127.0.0.1', 'Host: evil'], ['Host:'], ['Host: a b'], [`Host: ${'h'.repeat(300)}`]);
    const type = fc.constantFrom([], ['Content-Type: image/png'], ['Content-Type: application/json'], ['Content-Type:'], ['Content-Type: image/png', 'Content-Type: text/plain'],
      ['Content-Type: multipart/form-data'], ['Content-Type: application/octet-stream'], ['Content-Type: ;;;'], ['Content-Type: image/png; boundary="'], [`Content-Type: image/${'x'.repeat(500)}`]);
    const length = fc.constantFrom('exact', 'none', 'double', 'junk', 'negative', 'short', 'chunked', 'chunked+length', 'huge');
    const extra = fc.subarray(['Inference-Header-Content-Length: 10', 'Inference-Header-Content-Length: -1', 'Inference-Header-Content-Length: abc', 'Inference-Header-Content-Length: 99999999999',
      'Expect: 100-continue', 'Expect: nonsense', 'Connection: keep-alive, close, upgrade', 'Upgrade: websocket', 'Authorization: Bearer x', 'X-Request-Id: <script>', `X-Long: ${'v'.repeat(8000)}`,
      'Transfer-Encoding: gzip', 'Accept: */*', 'Content-Encoding: gzip', 'Range: bytes=0-1'], { maxLength: 3 });
    const target = fc.constantFrom('/v1/models/tiny-image/classify', '/v1/models/tiny-lm/score', '/v2/models/tiny-image/infer', '/v2/health/live', '/v2/health/ready', '/metrics', 'http://127.0.0.1/v2/health/live', '*', '/v2');
    const method = fc.constantFrom('POST', 'GET', 'PUT', 'OPTIONS', 'PATCH', 'post', 'DELETE');
    await fc.assert(fc.asyncProperty(method, target, line, host, type, length, extra, fc.constantFrom('png', 'json', 'empty'),
      async (m, t, l, h, ct, len, ex, kind) => {
        const body = kind === 'png' ? png : kind === 'json' ? Buffer.from('{"text":"the of and"}') : Buffer.alloc(0);
        const headers = [...h, ...ct, ...ex];
        let payload = body;
        if (len === 'exact') headers.push(`Content-Length: ${body.length}`);
        else if (len === 'double') headers.push(`Content-Length: ${body.length}`, `Content-Length: ${body.length + 1}`);
        else if (len === 'junk') headers.push('Content-Length: 12abc');
        else if (len === 'negative') headers.push('Content-Length: -5');
        else if (len === 'short') headers.push(`Content-Length: ${body.length + 7}`);
        else if (len === 'huge') headers.push(`Content-Length: ${2 ** 53}`);
        else if (len.startsWith('chunked')) {
          headers.push('Transfer-Encoding: chunked');
          if (len === 'chunked+length') headers.push(`Content-Length: ${body.length}`);
          payload = Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]);
        }
        headers.push('Connection: close');
        const req = Buffer.concat([Buffer.from(`${m} ${t} ${l}\r\n${headers.join('\r\n')}\r\n\r\n`, 'latin1'), payload]);
        const r = await rawHttp(s.port, req, { timeoutMs: 15_000 });
        // A short body waits for --body-timeout-ms, then gets 408.
        await check('odd headers', r, /^(http:\/\/127\.0\.0\.1)?\/v2/.test(t) ? 'parsed' : false);
      }), { ...params, numRuns: Math.max(20, Math.round(RUNS / 2)) });
  }, 600_000);

  it('ends ready, with RSS bounded and normal answers unchanged', async () => {
    const ready = await fetch(`${s.url}/v2/health/ready`);
    expect(ready.status).toBe(200);
    gc();
    const grown = (process.memoryUsage().rss - rssStart) / 2 ** 20;
    expect(grown, `RSS grew ${grown.toFixed(0)} MB`).toBeLessThan(256);
    const after = await normalAnswers();
    expect(after.label).toBe(baseline.label);
    expect(after.logprob).toBeCloseTo(baseline.logprob, 5);
  });
});
