import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postJson, startTestServer, type TestServer } from './helpers.js';

const KEY = 'k3y-0123456789abcdef-xyz';
const OTHER = 'second-key-0123456789abcdef';
const json = (r: Response): Promise<any> => r.json();

let s: TestServer;
const logLines: string[] = [];
beforeAll(async () => {
  const logStream = new Writable({ write(chunk, _enc, cb) { logLines.push(...chunk.toString().split('\n').filter(Boolean)); cb(); } });
  s = await startTestServer({ apiKeys: [KEY, OTHER], openHealth: true, bodyLimitBytes: 4096, logLevel: 'info' }, ['tiny-image'], { logStream });
});
afterAll(async () => {
  await s?.cleanup();
});

const auth = (key: string) => ({ authorization: `Bearer ${key}` });

describe('bearer API keys', () => {
  it('refuses missing and wrong keys with 401 DEQ_ERR_UNAUTHORIZED', async () => {
    for (const headers of [{}, auth('wrong-key-0123456789abcdef'), { authorization: KEY }, { authorization: `Basic ${KEY}` }, auth(`${KEY}x`)]) {
      const r = await fetch(`${s.url}/v1/models`, { headers });
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Bearer');
      expect((await json(r)).code).toBe('DEQ_ERR_UNAUTHORIZED');
    }
    const v2 = await postJson(`${s.url}/v2/models/tiny-image/infer`, { inputs: [] });
    expect(v2.status).toBe(401);
    expect(Object.keys(await json(v2))).toEqual(['error']);
  });

  it('accepts every configured key', async () => {
    expect((await fetch(`${s.url}/v1/models`, { headers: auth(KEY) })).status).toBe(200);
    expect((await fetch(`${s.url}/v1/models/tiny-image`, { headers: auth(OTHER) })).status).toBe(200);
  });

  it('leaves health and metrics open when openHealth is on', async () => {
    expect((await fetch(`${s.url}/v2/health/live`)).status).toBe(200);
    expect((await fetch(`${s.url}/v2/health/ready`)).status).toBe(200);
    expect((await fetch(`${s.url}/metrics`)).status).toBe(200);
    expect((await fetch(`${s.url}/v2`)).status).toBe(401);
  });

  it('closes health and metrics too when openHealth is off', async () => {
    const closed = await startTestServer({ apiKeys: [KEY], openHealth: false }, ['tiny-image']);
    try {
      expect((await fetch(`${closed.url}/v2/health/ready`)).status).toBe(401);
      expect((await fetch(`${closed.url}/metrics`)).status).toBe(401);
      expect((await fetch(`${closed.url}/metrics`, { headers: auth(KEY) })).status).toBe(200);
    } finally {
      await closed.cleanup();
    }
  });
});

describe('limits', () => {
  it('refuses a JSON body over the body limit with 413', async () => {
    const big = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data: new Array(2000).fill(0.123456) }] };
    const r = await postJson(`${s.url}/v2/models/tiny-image/infer`, big, auth(KEY));
    expect(r.status).toBe(413);
    expect(r.headers.get('x-deq-error-code')).toBe('DEQ_ERR_PAYLOAD_TOO_LARGE');
  });
});

describe('logs', () => {
  it('writes one line per request with its id, and never the key or the body', async () => {
    const id = 'trace-abc-123';
    await postJson(`${s.url}/v2/models/tiny-image/infer`, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data: new Array(64).fill(0.5) }] }, { ...auth(KEY), 'x-request-id': id });
    const mine = logLines.filter((l) => l.includes(id));
    expect(mine).toHaveLength(1);
    const line = JSON.parse(mine[0]);
    expect(line).toMatchObject({ msg: 'request', reqId: id, status: 200, model: 'tiny-image', route: '/v2/models/:name/infer' });
    expect(line.solve.method).toBe('broyden');
    const all = logLines.join('\n');
    expect(all).not.toContain(KEY);
    expect(all).not.toContain(OTHER);
    expect(all).not.toContain('0.5,0.5');
    expect(all).toContain('effective configuration');
  });
});
