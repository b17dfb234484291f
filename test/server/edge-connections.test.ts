// Regression tests for issue #22 defect 2: about 20,000 connections that sent nothing
// exhausted the server's file descriptors, and /v2/health/live then failed with
// "socket hang up" for as long as they were held. Idle sockets lived 60–90 s.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeModelsDir, startTestServer, until, type TestServer } from './helpers.js';
import { rawHttp } from './raw-http.js';

const sockets: net.Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
});

/** Opens `n` loopback connections (in batches, bounded in time) and leaves them open; `send` is written on each. */
async function openMany(port: number, n: number, send = ''): Promise<{ open: () => number }> {
  let closed = 0;
  for (let i = 0; i < n; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      sockets.push(s);
      const timer = setTimeout(resolve, 2000);
      s.on('connect', () => { if (send) s.write(send); clearTimeout(timer); resolve(); });
      s.on('error', () => { clearTimeout(timer); resolve(); });
      s.on('close', () => { closed++; });
    })));
  }
  return { open: () => n - closed };
}

/** GET over a fresh connection; the status, or the error text ("socket hang up", a timeout). */
async function get(port: number, path: string, timeoutMs = 5000): Promise<number | string> {
  const r = await rawHttp(port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`, { timeoutMs });
  return r ? r.status : 'no response';
}

describe('fd exhaustion (a server under `ulimit -n 256`, default settings)', () => {
  let child: ChildProcess | undefined;
  let port = 0;
  let cleanup: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    const models = await makeModelsDir(['tiny-image']);
    cleanup = models.cleanup;
    const script = fileURLToPath(new URL('./serve-child.mjs', import.meta.url));
    // The cap is derived from the open-file limit the server starts under.
    child = spawn('sh', ['-c', `ulimit -n 256 && exec "${process.execPath}" "${script}" --port 0 --workers 1`], {
      env: { ...process.env, DEQ_MODELS_DIR: models.dir, DEQ_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start: ${out}`)), 30_000);
      child!.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /READY (\S+)/.exec(out);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
      child!.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
      child!.on('exit', () => { clearTimeout(timer); reject(new Error(`server exited: ${out}`)); });
    });
    port = Number(new URL(url).port);
  }, 60_000);
  afterAll(async () => {
    child?.kill('SIGKILL');
    await cleanup?.();
  });

  it('liveness answers while 400 idle connections are held, more than the descriptors allow', async () => {
    expect(await get(port, '/v2/health/live')).toBe(200);
    const held = await openMany(port, 400);
    const answers: (number | string)[] = [];
    for (let i = 0; i < 5; i++) answers.push(await get(port, '/v2/health/live'));
    expect(answers).toEqual([200, 200, 200, 200, 200]);
    // The cap (256 − 64 kept for the process − 16 for probes = 176) closed the oldest idle ones.
    await until(async () => held.open() <= 176, 5000);
    expect(await get(port, '/v1/models')).toBe(200);
  }, 60_000);
});

describe('the connection cap, in process', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ maxConnections: 8, headersTimeoutMs: 1000, keepAliveTimeoutMs: 500, bodyTimeoutMs: 20_000 }, ['tiny-image']);
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  it('closes the oldest idle connections to make room: liveness answers over 40 idle ones', async () => {
    const held = await openMany(s.port, 40);
    expect(await get(s.port, '/v2/health/live')).toBe(200);
    await until(async () => held.open() <= 8, 5000);
    expect(s.app.edge.connections.stats.evicted).toBeGreaterThanOrEqual(32);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(Number(/^deq_connections_evicted_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(32);
    expect(Number(/^deq_open_connections (\d+)/m.exec(metrics)?.[1])).toBeLessThanOrEqual(8);
  });

  it('when every connection is busy, health routes still answer on new ones; other routes get 503 + Retry-After', async () => {
    // 8 uploads that stall mid-body: busy, so not closed to make room.
    await openMany(s.port, 8, 'POST /v1/models/tiny-image/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\nabc');
    await new Promise((r) => setTimeout(r, 200));
    for (const path of ['/v2/health/live', '/v2/health/ready', '/v2/models/tiny-image/ready']) expect(await get(s.port, path), path).toBe(200);
    const r = await rawHttp(s.port, 'GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(r?.status).toBe(503);
    expect(r?.headers['x-deq-error-code']).toBe('DEQ_ERR_OVERLOADED');
    expect(r?.headers['retry-after']).toBe('1');
    expect(r?.headers.connection).toBe('close');
    expect(JSON.parse(r!.body).error).toMatch(/--max-connections/);
    expect(s.app.edge.connections.stats.probation).toBeGreaterThanOrEqual(4);
    for (const sock of sockets.splice(0)) sock.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect(await get(s.port, '/v1/models')).toBe(200);
  });

  it('closes a connection that sends no request within --headers-timeout-ms, and an idle keep-alive within --keep-alive-timeout-ms', async () => {
    const t0 = Date.now();
    const silent = await new Promise<number>((resolve) => {
      const c = net.connect(s.port, '127.0.0.1');
      sockets.push(c);
      c.on('close', () => resolve(Date.now() - t0));
      setTimeout(() => resolve(-1), 8000);
    });
    // Node checks header timeouts once a second here (it was every 30 s): 1 s timeout + ≤ 1 s + scheduling.
    expect(silent).toBeGreaterThan(0);
    expect(silent).toBeLessThan(5000);
    const t1 = Date.now();
    const idle = await new Promise<number>((resolve) => {
      const c = net.connect(s.port, '127.0.0.1', () => c.write('GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n'));
      sockets.push(c);
      c.on('data', () => {});
      c.on('close', () => resolve(Date.now() - t1));
      setTimeout(() => resolve(-1), 8000);
    });
    expect(idle).toBeGreaterThan(0);
    expect(idle).toBeLessThan(4000);
  });
});
