// Regression tests for issue #12 items 4–9 and 12–14: hostile input gets the
// right status, in the catalogue's shape, decided without reading what it need not.
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, postJson, startTestServer, type TestServer } from './helpers.js';
import { multipartBody, rawHttp, rawPost, type RawResponse } from './raw-http.js';

const HOSTILE = `${FIXTURES}hostile/`;
const file = (name: string) => readFileSync(`${HOSTILE}${name}`);
const CLASSIFY = '/v1/models/tiny-image/classify';
const KEY = 'hostile-test-key-0123456789';

let s: TestServer;
const logLines: string[] = [];
beforeAll(async () => {
  const logStream = new Writable({ write(chunk, _enc, cb) { logLines.push(...chunk.toString().split('\n').filter(Boolean)); cb(); } });
  s = await startTestServer({ logLevel: 'info', apiKeys: [KEY], openHealth: true }, ['tiny-image', 'tiny-lm'], { logStream });
});
afterAll(async () => {
  await s?.cleanup();
});

const auth = `Authorization: Bearer ${KEY}\r\n`;
const send = (req: string | Buffer, timeoutMs?: number) => rawHttp(s.port, req, { timeoutMs });

/** The catalogue's shape: status, x-deq-error-code, {error, code} (v1) or {error} (v2), nosniff. */
function expectCatalogue(r: RawResponse | null, status: number, code: string, v2 = false): void {
  expect(r, 'a response, not a reset or a hang').not.toBeNull();
  expect(r!.status).toBe(status);
  expect(r!.headers['x-deq-error-code']).toBe(code);
  expect(r!.headers['x-content-type-options']).toBe('nosniff');
  expect(r!.headers['content-type']).toMatch(/^application\/json/);
  const body = JSON.parse(r!.body);
  expect(body).toEqual(v2 ? { error: expect.any(String) } : { error: expect.any(String), code });
}

describe('malformed multipart (item 4)', () => {
  const B = 'hostileBoundary';
  const png = file('ok.png');

  it('skips a text field sent before the file, as documented', async () => {
    const body = multipartBody(B, [{ name: 'note', body: 'x' }, { name: 'image', filename: 'a.png', type: 'image/png', body: png }]);
    const r = await send(rawPost(CLASSIFY, `multipart/form-data; boundary=${B}`, body, auth));
    expect(r?.status).toBe(200);
    expect(JSON.parse(r!.body).model).toBe('tiny-image');
  });

  it('answers 400 with the code for a missing boundary, a missing closing boundary and a body cut mid-file', async () => {
    const whole = multipartBody(B, [{ name: 'image', filename: 'a.png', type: 'image/png', body: png }]);
    expectCatalogue(await send(rawPost(CLASSIFY, 'multipart/form-data', whole, auth)), 400, 'DEQ_ERR_INVALID_INPUT');
    const unclosed = multipartBody(B, [{ name: 'image', filename: 'a.png', type: 'image/png', body: png }], false);
    expectCatalogue(await send(rawPost(CLASSIFY, `multipart/form-data; boundary=${B}`, unclosed, auth)), 400, 'DEQ_ERR_INVALID_INPUT');
    const cut = whole.subarray(0, 200);
    expectCatalogue(await send(rawPost(CLASSIFY, `multipart/form-data; boundary=${B}`, cut, auth)), 400, 'DEQ_ERR_INVALID_INPUT');
  });

  it('says the image must be a file when it is sent as a text field (-F image=hello)', async () => {
    const body = multipartBody(B, [{ name: 'image', body: 'hello' }]);
    const r = await send(rawPost(CLASSIFY, `multipart/form-data; boundary=${B}`, body, auth));
    expectCatalogue(r, 400, 'DEQ_ERR_INVALID_INPUT');
    expect(JSON.parse(r!.body).error).toMatch(/must be a file/);
  });
});

describe('content types (items 5 and 9)', () => {
  it('refuses a JSON or text body to /classify before reading it', async () => {
    for (const type of ['application/json', 'text/plain']) {
      // Headers promise 8 MB; 1 KB is sent and the socket stays open. Only a
      // server that decides from the header answers before the body ends.
      const head = `POST ${CLASSIFY} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${type}\r\nContent-Length: ${8 << 20}\r\n${auth}\r\n`;
      const r = await send(Buffer.concat([Buffer.from(head), Buffer.alloc(1024, 0x20)]), 3000);
      expectCatalogue(r, 415, 'DEQ_ERR_UNSUPPORTED_MEDIA_TYPE');
      expect(r!.ms).toBeLessThan(2000);
    }
  });

  it('parses media types: parameters and case do not change an image type', async () => {
    for (const type of ['image/png; charset=binary', 'image/png;', 'IMAGE/PNG', 'image/png ; q="x;y"']) {
      const r = await send(rawPost(CLASSIFY, type, file('ok.png'), auth));
      expect(r?.status, type).toBe(200);
    }
    expectCatalogue(await send(rawPost(CLASSIFY, 'image', file('ok.png'), auth)), 415, 'DEQ_ERR_UNSUPPORTED_MEDIA_TYPE');
  });
});

describe('framework errors in the catalogue (item 6)', () => {
  it('an over-long model name: 414 with the code', async () => {
    const r = await send(`GET /v1/models/${'a'.repeat(250)} HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`);
    expectCatalogue(r, 414, 'DEQ_ERR_URI_TOO_LONG');
    const v2 = await send(`GET /v2/models/${'a'.repeat(250)} HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`);
    expectCatalogue(v2, 414, 'DEQ_ERR_URI_TOO_LONG', true);
  });

  it('bad percent-encoding: 400 with the code, v2 in the v2 shape', async () => {
    expectCatalogue(await send(`GET /v1/models/%ff HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`), 400, 'DEQ_ERR_INVALID_INPUT');
    expectCatalogue(await send(`GET /v2/models/%ff HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`), 400, 'DEQ_ERR_INVALID_INPUT', true);
  });

  it('headers too large: 431 with the code; an unknown Expect: 417 with a body', async () => {
    expectCatalogue(await send(`GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`), 431, 'DEQ_ERR_HEADERS_TOO_LARGE');
    expectCatalogue(await send(`POST ${CLASSIFY} HTTP/1.1\r\nHost: x\r\nExpect: bogus\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`), 417, 'DEQ_ERR_EXPECTATION_FAILED');
  });
});

describe('float32 overflow (item 7)', () => {
  it('refuses values that are not finite in float32 with 400', async () => {
    for (const big of [1e39, 1e300, -1e39]) {
      const data = new Array(64).fill(0.5);
      data[3] = big;
      const r = await postJson(`${s.url}/v2/models/tiny-image/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data }] }, { authorization: `Bearer ${KEY}` });
      expect(r.status, String(big)).toBe(400);
      expect(r.headers.get('x-deq-error-code')).toBe('DEQ_ERR_INVALID_INPUT');
      expect(((await r.json()) as { error: string }).error).toMatch(/finite in float32/);
    }
  });
});

describe('truncated images (item 8)', () => {
  it('refuses PNG, GIF and TIFF files missing their last byte, and a TIFF cut at 90%', async () => {
    for (const name of ['png-missing-last-byte.png', 'gif-missing-last-byte.gif', 'tiff-missing-last-byte.tif', 'tiff-cut-at-90-percent.tif']) {
      const type = name.endsWith('.png') ? 'image/png' : name.endsWith('.gif') ? 'image/gif' : 'image/tiff';
      const r = await send(rawPost(CLASSIFY, type, file(name), auth));
      expectCatalogue(r, 400, 'DEQ_ERR_IMAGE_DECODE');
    }
  });

  it('still accepts the same files intact', async () => {
    for (const name of ['ok.png', 'ok.gif', 'ok.tif', 'ok-directory-first.tif']) {
      const r = await send(rawPost(CLASSIFY, 'image/png', file(name), auth));
      expect(r?.status, name).toBe(200);
    }
  });
});

describe('hygiene (items 12–14)', () => {
  it('sends nosniff on every response and never reflects markup', async () => {
    for (const r of [await fetch(`${s.url}/v2/health/live`), await fetch(`${s.url}/v1/models`, { headers: { authorization: `Bearer ${KEY}` } }), await fetch(`${s.url}/nope`)]) {
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    }
    const r = await fetch(`${s.url}/v1/models/${encodeURIComponent('<script>x</script>')}`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(r.status).toBe(404);
    expect(await r.text()).not.toMatch(/[<>]/);
    const m = await postJson(`${s.url}/v2/models/tiny-image/infer`, { inputs: [{ name: '<img src=x>', datatype: 'FP32', shape: [1], data: [1] }] }, { authorization: `Bearer ${KEY}` });
    expect(m.status).toBe(400);
    expect(await m.text()).not.toMatch(/[<>]/);
  });

  it('logs readiness 503s at info, not error', async () => {
    s.state.loaded = false;
    try {
      const r = await fetch(`${s.url}/v2/health/ready`);
      expect(r.status).toBe(503);
      const m = await fetch(`${s.url}/v2/models/tiny-image/ready`);
      expect(m.status).toBe(503);
    } finally {
      s.state.loaded = true;
    }
    await new Promise((r) => setTimeout(r, 50));
    const lines = logLines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request' && l.status === 503);
    expect(lines.length).toBe(2);
    for (const l of lines) expect(l.level).toBe(30);
  });

  it('counts /v2/models/{name}/ready as a health route: open without a key under --open-health', async () => {
    expect((await fetch(`${s.url}/v2/models/tiny-image/ready`)).status).toBe(200);
    expect((await fetch(`${s.url}/v2/models/tiny-image`)).status).toBe(401);
  });
});
