import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageToTensor } from '../../src/preprocess/image.js';
import { FIXTURES, startTestServer, type TestServer } from './helpers.js';

// The page itself is exercised in a real browser by `npm run test:browser` (test/browser/);
// here: how the server serves it, and the classify option it draws the model's input from.
let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({}, ['tiny-image']);
});
afterAll(async () => {
  await s?.cleanup();
});

describe('/playground', () => {
  it('serves the page, its scripts and style sheet, with a CSP that admits only its own files', async () => {
    const page = await fetch(`${s.url}/playground/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    const html = await page.text();
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]).filter((r) => !r.startsWith('/'));
    expect(refs).toEqual(expect.arrayContaining(['style.css', 'main.js']));
    for (const ref of refs) {
      const res = await fetch(`${s.url}/playground/${ref}`);
      expect(res.status, ref).toBe(200);
      expect(res.headers.get('content-type')).toMatch(ref.endsWith('.js') ? /^text\/javascript/ : /^text\/css/);
    }
    // Every module the page imports is served too.
    const main = await (await fetch(`${s.url}/playground/main.js`)).text();
    for (const m of main.matchAll(/from '\.\/([a-z-]+\.js)'/g)) expect((await fetch(`${s.url}/playground/${m[1]}`)).status, m[1]).toBe(200);
  });

  it('redirects /playground to /playground/ and serves nothing but its own files', async () => {
    const r = await fetch(`${s.url}/playground`, { redirect: 'manual' });
    expect(r.status).toBe(302);
    expect(r.headers.get('location')).toBe('/playground/');
    for (const path of ['/playground/nope.js', '/playground/..%2Fpackage.json', '/playground/%2e%2e%2fserver%2fapp.js', '/playground/api.js.map', '/playground/api.ts']) {
      const res = await fetch(`${s.url}${path}`);
      expect(res.status, path).toBe(404);
      expect((await res.json() as { code: string }).code).toBe('DEQ_ERR_NOT_FOUND');
    }
  });

  it('--playground false removes it; with API keys it needs a key like any route', async () => {
    const off = await startTestServer({ playground: false }, ['tiny-image']);
    try {
      expect((await fetch(`${off.url}/playground/`)).status).toBe(404);
    } finally {
      await off.cleanup();
    }
    const key = 'playground-test-key-0123456789';
    const locked = await startTestServer({ apiKeys: [key] }, ['tiny-image']);
    try {
      expect((await fetch(`${locked.url}/playground/`)).status).toBe(401);
      expect((await fetch(`${locked.url}/playground/`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    } finally {
      await locked.cleanup();
    }
  });
});

describe('classify ?preprocessed=true', () => {
  it('returns the input tensor the model saw, as the preprocessing makes it', async () => {
    const png = await sharp({ create: { width: 20, height: 12, channels: 3, background: { r: 200, g: 40, b: 90 } } })
      .composite([{ input: { create: { width: 6, height: 6, channels: 3, background: { r: 10, g: 250, b: 10 } } }, left: 3, top: 2 }])
      .png().toBuffer();
    const res = await fetch(`${s.url}/v1/models/tiny-image/classify?preprocessed=true`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });
    expect(res.status).toBe(200);
    const body = await res.json() as { input: { shape: number[]; data: number[] } };
    const manifest = JSON.parse(readFileSync(`${FIXTURES}tiny-image/manifest.json`, 'utf8'));
    const expected = await imageToTensor(png, manifest.preprocess, { maxPixels: 1 << 20 });
    expect(body.input.shape).toEqual([1, 8, 8]);
    expect(body.input.data).toEqual(Array.from(expected));
    expect(new Set(body.input.data).size).toBeGreaterThan(1);
    const plain = await fetch(`${s.url}/v1/models/tiny-image/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });
    expect(await plain.json()).not.toHaveProperty('input');
  });
});
