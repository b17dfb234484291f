import SwaggerParser from '@apidevtools/swagger-parser';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE } from '../../src/errors.js';
import { loadConfig } from '../../src/server/config.js';
import { startTestServer, type TestServer } from './helpers.js';

const MODELS = ['tiny-image', 'tiny-lm', 'tiny-tensor'];
const KEY = 'openapi-test-key-0123456789';

let s: TestServer;
let doc: any;
beforeAll(async () => {
  s = await startTestServer({}, MODELS);
  const res = await fetch(`${s.url}/openapi.json`);
  expect(res.status).toBe(200);
  doc = await res.json();
});
afterAll(async () => {
  await s?.cleanup();
});

/** Every route fastify knows, as "METHOD /path/{param}", read from its route tree (HEAD aside). */
function registeredRoutes(tree: string): string[] {
  const out: string[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│├└─\s]*)(\S.*?) \(([A-Z, ]+)\)$/.exec(line);
    if (!m) continue;
    const depth = m[1].length / 4;
    stack.length = depth - 1;
    const path = (stack[depth - 2] ?? '') + m[2];
    stack[depth - 1] = path;
    for (const method of m[3].split(', ')) if (method !== 'HEAD') out.push(`${method} ${path.replace(/:(\w+)/g, '{$1}')}`);
  }
  return out;
}

const operations = () => Object.entries(doc.paths as Record<string, Record<string, any>>)
  .flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ path, method, op })));

describe('GET /openapi.json', () => {
  it('passes the OpenAPI validator (3.1)', async () => {
    expect(doc.openapi).toBe('3.1.0');
    // The validator dereferences in place: give it a copy.
    await expect(SwaggerParser.validate(structuredClone(doc))).resolves.toBeTruthy();
  });

  it('documents every registered route except the documentation itself', () => {
    const routes = registeredRoutes(s.app.printRoutes({ commonPrefix: false }))
      .filter((r) => !/ \/(openapi\.json|docs|playground)(\/|$)/.test(r));
    expect(routes.length).toBeGreaterThanOrEqual(15);
    const documented = operations().map((o) => `${o.method.toUpperCase()} ${o.path}`);
    expect(documented.sort()).toEqual(routes.sort());
  });

  it('answers each catalogue status a route can give with the error schema', () => {
    for (const { method, path, op } of operations()) {
      for (const status of [400, 404, 500, 503]) expect(op.responses[status], `${method} ${path} ${status}`).toBeDefined();
      if (method === 'post') for (const status of [413, 415, 422, 504]) expect(op.responses[status], `${method} ${path} ${status}`).toBeDefined();
    }
    expect([...doc.components.schemas.Error.properties.code.enum].sort()).toEqual(Object.keys(ERROR_CATALOGUE).sort());
    const score = doc.paths['/v1/models/{name}/score'].post;
    expect(score.responses['422'].content['application/json'].schema.$ref).toBe('#/components/schemas/Error');
    expect(doc.paths['/v2/models/{name}/infer'].post.responses['400'].content['application/json'].schema.$ref).toBe('#/components/schemas/V2Error');
  });

  it('describes the image upload and the binary tensor extension as request bodies', () => {
    const classify = doc.paths['/v1/models/{name}/classify'].post.requestBody.content;
    expect(Object.keys(classify)).toEqual(expect.arrayContaining(['multipart/form-data', 'image/png']));
    const infer = doc.paths['/v2/models/{name}/infer'].post;
    expect(Object.keys(infer.requestBody.content)).toEqual(expect.arrayContaining(['application/json', 'application/octet-stream']));
    expect(infer.parameters.map((p: any) => p.name)).toContain('Inference-Header-Content-Length');
    // The solver knobs come from the route schema, with the server's caps as ranges.
    const q = doc.paths['/v1/models/{name}/classify'].post.parameters.find((p: any) => p.name === 'max_iter');
    expect(q.schema.maximum).toBe(s.state.config.maxIterCap);
  });

  it('documents the solve routes\' server-sent events beside their JSON answer', () => {
    const streamed = operations().filter(({ op }) => op.responses['200']?.content?.['text/event-stream']).map(({ method, path }) => `${method} ${path}`);
    expect(streamed.sort()).toEqual(['post /v1/models/{name}/classify', 'post /v1/models/{name}/predict', 'post /v1/models/{name}/score']);
    expect(Object.keys(doc.components.schemas.IterationEvent.properties.samples.items.properties)).toEqual(expect.arrayContaining(['sample', 'iteration', 'residual', 'window']));
  });

  it('has no security requirement when no API key is configured', () => {
    expect(doc.security).toBeUndefined();
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
  });
});

describe('each operation\'s example, sent to the live server', () => {
  /** The request an operation's examples describe: path params, query and body from the document alone. */
  function exampleRequest(path: string, op: any): { url: string; init: RequestInit } {
    let url = path;
    const query = new URLSearchParams();
    for (const p of op.parameters ?? []) {
      if (p.in === 'path') {
        expect(p.example, `${path}: path parameter ${p.name} has an example`).toBeDefined();
        url = url.replace(`{${p.name}}`, encodeURIComponent(String(p.example)));
      } else if (p.in === 'query' && p.example !== undefined) query.set(p.name, String(p.example));
    }
    const json = op.requestBody?.content?.['application/json'];
    const init: RequestInit = {};
    if (json) {
      expect(json.example, `${path}: a JSON body example`).toBeDefined();
      init.method = 'POST';
      init.headers = { 'content-type': 'application/json' };
      init.body = JSON.stringify(json.example);
    }
    return { url: s.url + url + (query.size ? `?${query}` : ''), init };
  }

  it('every operation succeeds (an image route gets a generated PNG: binary bodies have no example)', async () => {
    const image = await sharp({ create: { width: 28, height: 28, channels: 3, background: { r: 90, g: 90, b: 90 } } }).png().toBuffer();
    const failures: string[] = [];
    for (const { path, method, op } of operations()) {
      const { url, init } = exampleRequest(path, op);
      if (method === 'post' && op.requestBody?.content?.['image/png']) {
        init.method = 'POST';
        init.headers = { 'content-type': 'image/png' };
        init.body = image;
      }
      const res = await fetch(url, init);
      const body = await res.text();
      if (res.status !== 200) failures.push(`${method.toUpperCase()} ${path} → ${res.status} ${body.slice(0, 200)}`);
      // A documented event stream: the same example, asked for as events, ends with its answer.
      if (op.responses['200']?.content?.['text/event-stream']) {
        const sse = await fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), accept: 'text/event-stream' } });
        const events = await sse.text();
        if (!/^text\/event-stream/.test(sse.headers.get('content-type') ?? '') || !/^event: iteration\n/.test(events) || !/\nevent: result\ndata: \{.*\}\n\n$/.test(events)) {
          failures.push(`${method.toUpperCase()} ${path} as text/event-stream → ${sse.status} ${sse.headers.get('content-type')} ${events.slice(-200)}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });
});

describe('settings and auth', () => {
  it('with API keys: the document and /docs need a key like any route; health stays open and says so', async () => {
    const a = await startTestServer({ apiKeys: [KEY], openHealth: true }, ['tiny-image']);
    try {
      expect((await fetch(`${a.url}/openapi.json`)).status).toBe(401);
      expect((await fetch(`${a.url}/docs/`)).status).toBe(401);
      const res = await fetch(`${a.url}/openapi.json`, { headers: { authorization: `Bearer ${KEY}` } });
      expect(res.status).toBe(200);
      const d: any = await res.json();
      expect(d.security).toEqual([{ bearer: [] }]);
      expect(d.paths['/v2/health/live'].get.security).toEqual([]);
      expect(d.paths['/v1/models'].get.security).toBeUndefined();
      expect(d.paths['/v1/models'].get.responses['401']).toBeDefined();
      expect(d.paths['/v2/health/live'].get.responses['401']).toBeUndefined();
    } finally {
      await a.cleanup();
    }
  });

  it('--openapi false and --docs false remove the routes', async () => {
    const off = await startTestServer({ openapi: false, docs: false }, ['tiny-image']);
    try {
      expect((await fetch(`${off.url}/openapi.json`)).status).toBe(404);
      expect((await fetch(`${off.url}/docs/`)).status).toBe(404);
    } finally {
      await off.cleanup();
    }
    const noDocs = await startTestServer({ docs: false }, ['tiny-image']);
    try {
      expect((await fetch(`${noDocs.url}/openapi.json`)).status).toBe(200);
      expect((await fetch(`${noDocs.url}/docs/`)).status).toBe(404);
    } finally {
      await noDocs.cleanup();
    }
  });

  it('--docs without --openapi fails at startup, naming the setting', () => {
    expect(() => loadConfig(['--openapi', 'false'])).toThrow(/--docs.*--openapi/);
    expect(() => loadConfig(['--openapi', 'false', '--docs', 'false'])).not.toThrow();
  });

  it('/docs is Swagger UI from the package\'s own files: nothing loaded from another host', async () => {
    const res = await fetch(`${s.url}/docs/`);
    expect(res.status).toBe(200);
    const csp = res.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/upgrade-insecure-requests|https?:|\.(io|com|org)\b/);
    const html = await res.text();
    expect(html).toContain('swagger-ui');
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(refs.length).toBeGreaterThan(2);
    for (const ref of refs) expect(ref, ref).not.toMatch(/^(https?:)?\/\//);
    for (const ref of refs) expect((await fetch(new URL(ref, `${s.url}/docs/`))).status, ref).toBe(200);
    const init = await (await fetch(`${s.url}/docs/static/swagger-initializer.js`)).text();
    expect(init).toContain("validatorUrl: null");
    // The page reads /docs/json: the very document /openapi.json serves.
    expect(init).toContain("resolveUrl('./json')");
    expect(await (await fetch(`${s.url}/docs/json`)).json()).toEqual(doc);
  });
});
