// `npm run test:gateway`: Debian's nginx with the shipped deploy/nginx/deq-serve.conf
// in front of two real replicas on loopback ports; one replica is killed,
// restarted and drained under bounded load.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from '../../dist/server/index.js';
import { announceSkip, ensureTools, fashionPngs, freePort, recordFigures, Replica, ROOT, sh, SLOW_CLASSIFY, waitFor200 } from './helpers.js';
import { until } from '../server/helpers.js';

/** Solves of several seconds' worth of iterations (the replicas' cap allows 20,000): in flight when the drain starts. */
const DRAIN_SLOW = '?solver=fixed-point&tol=1e-8&stop_mode=abs&max_iter=4000';

const skip = await ensureTools([{ bin: 'nginx', pkg: 'nginx' }]);
if (skip) announceSkip('test:gateway', skip);

const SHIPPED_CONF = join(ROOT, 'deploy/nginx/deq-serve.conf');

/**
 * The shipped file with only its addresses changed: the gateway's listen port,
 * the two upstream replicas' ports and the access log path. Each substitution
 * must hit exactly once, so an edit to the shipped file that breaks this fails here.
 */
function templateConf(conf: string, gatewayPort: number, replicaPorts: [number, number], accessLog: string): string {
  const swaps: [RegExp, string][] = [
    [/^(\s*)listen 8080;$/m, `$1listen 127.0.0.1:${gatewayPort};`],
    [/^(\s*)server 127\.0\.0\.1:8081 /m, `$1server 127.0.0.1:${replicaPorts[0]} `],
    [/^(\s*)server 127\.0\.0\.1:8082 /m, `$1server 127.0.0.1:${replicaPorts[1]} `],
    [/\/var\/log\/nginx\/deq-serve\.access\.log/, accessLog],
  ];
  for (const [re, to] of swaps) {
    if ((conf.match(new RegExp(re.source, `${re.flags}g`)) ?? []).length !== 1) throw new Error(`deq-serve.conf: expected exactly one match of ${re}`);
    conf = conf.replace(re, to);
  }
  return conf;
}

/** The value of the first `name` directive in `text` (the shipped file, or one block of it). */
function directive(text: string, name: string): string {
  const m = new RegExp(`^\\s*${name}\\s+([^;]+);`, 'm').exec(text);
  if (!m) throw new Error(`deq-serve.conf has no ${name}`);
  return m[1].trim();
}

const seconds = (v: string) => { const m = /^(\d+)s$/.exec(v); if (!m) throw new Error(`not N s: ${v}`); return Number(m[1]); };
const bytes = (v: string) => { const m = /^(\d+)([km])$/.exec(v); if (!m) throw new Error(`not Nk/Nm: ${v}`); return Number(m[1]) * (m[2] === 'm' ? 1 << 20 : 1 << 10); };

interface Outcome { id: string; status: number; echoed: string | null; t0: number; t1: number; body?: string }

describe.skipIf(skip !== null)('nginx in front of two replicas', () => {
  const figures: Record<string, unknown> = {};
  const replicas: Replica[] = [];
  let nginx: ChildProcess;
  let dir = '';
  let gw = '';
  let pngs: { png: Buffer; label: string }[] = [];
  let seq = 0;

  /** Every id this suite sent: replicas also log requests of their own (the /metrics polls, probes) under ids they made. */
  const sent = new Set<string>();
  const nextId = (prefix: string) => {
    const id = `${prefix}-${++seq}`;
    sent.add(id);
    return id;
  };

  /** One request through the gateway under the client request id `id`; a network error becomes status 0. */
  async function send(kind: 'classify' | 'score' | 'infer' | 'slow', id: string, slowQuery = SLOW_CLASSIFY): Promise<Outcome> {
    const headers: Record<string, string> = { 'x-request-id': id };
    let path: string;
    let body: Buffer | string;
    if (kind === 'classify' || kind === 'slow') {
      path = `/v1/models/${kind === 'slow' ? 'fashion-mnist-plain' : 'fashion-mnist-jr'}/classify${kind === 'slow' ? slowQuery : ''}`;
      headers['content-type'] = 'image/png';
      body = pngs[seq % pngs.length].png;
    } else if (kind === 'score') {
      path = '/v1/models/brown-lm-jr/score';
      headers['content-type'] = 'application/json';
      body = JSON.stringify({ text: 'The jury said it did not find any evidence.' });
    } else {
      path = '/v2/models/fashion-mnist-jr/infer';
      headers['content-type'] = 'application/json';
      body = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1, 28, 28], data: Array.from({ length: 784 }, (_, i) => ((i * 37) % 255) / 255 - 0.3) }] });
    }
    const t0 = Date.now();
    try {
      const res = await fetch(`${gw}${path}`, { method: 'POST', headers, body, signal: AbortSignal.timeout(30_000) });
      const text = await res.text();
      return { id, status: res.status, echoed: res.headers.get('x-request-id'), t0, t1: Date.now(), body: res.status === 200 ? undefined : text.slice(0, 200) };
    } catch (err) {
      return { id, status: 0, echoed: null, t0, t1: Date.now(), body: String(err) };
    }
  }

  /** `total` requests from `concurrency` loops; `onDone(k, inflight)` after the k-th completes. */
  async function load(total: number, concurrency: number, kinds: ('classify' | 'score' | 'infer' | 'slow')[], prefix: string, onDone?: (k: number, inflight: Set<string>) => void) {
    const out: Outcome[] = [];
    const inflight = new Set<string>();
    let next = 0;
    const loop = async () => {
      while (next < total) {
        const kind = kinds[next++ % kinds.length];
        const id = nextId(prefix);
        inflight.add(id);
        const r = await send(kind, id);
        inflight.delete(id);
        out.push(r);
        onDone?.(out.length, inflight);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, loop));
    return out;
  }

  /**
   * Which replicas logged a request line for each id. A replica writes the line
   * after the response has gone out, so this waits (bounded) until every id is
   * accounted for, or `settleMs` for ids expected nowhere.
   */
  async function servedBy(ids: (string | null)[], settleMs = 3000): Promise<Map<string, number[]>> {
    const t0 = Date.now();
    for (;;) {
      const seen = new Map<string, number[]>();
      replicas.forEach((r, i) => { for (const l of r.requestLines()) seen.set(l.reqId, [...(seen.get(l.reqId) ?? []), i]); });
      if (ids.every((id) => id !== null && seen.has(id)) || Date.now() - t0 > settleMs) return seen;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Not 200, or a response without the request's own id echoed. */
  const failures = (rs: Outcome[]) => rs.filter((r) => r.status !== 200 || r.echoed !== r.id);

  beforeAll(async () => {
    pngs = await fashionPngs(8);
    dir = await mkdtemp(join(tmpdir(), 'deq-nginx-'));
    await chmod(dir, 0o755); // nginx workers run as an unprivileged user and write temp files here
    const [gp, pa, pb] = [await freePort(), await freePort(), await freePort()];
    gw = `http://127.0.0.1:${gp}`;
    for (const p of [pa, pb]) {
      // A higher iteration cap lets the drain test send solves long enough to be in flight at the signal.
      const r = new Replica(p, ['--workers', '1', '--shutdown-grace-ms', '10000', '--max-iter-cap', '20000']);
      r.start();
      replicas.push(r);
    }
    await Promise.all(replicas.map((r) => waitFor200(`${r.url}/v2/health/ready`, 90_000)));

    await writeFile(join(dir, 'deq-serve.conf'), templateConf(await readFile(SHIPPED_CONF, 'utf8'), gp, [pa, pb], join(dir, 'access.log')));
    // The main file a distribution's nginx.conf would be; only paths point into the temp dir.
    await writeFile(join(dir, 'nginx.conf'), [
      'daemon off;', 'worker_processes 1;', `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log info;`,
      'events { worker_connections 256; }',
      'http {',
      `  client_body_temp_path ${dir}/client_body; proxy_temp_path ${dir}/proxy;`,
      `  fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;`,
      `  include ${dir}/deq-serve.conf;`,
      '}', '',
    ].join('\n'));
    await sh('nginx', ['-t', '-q', '-p', dir, '-c', join(dir, 'nginx.conf')]);
    nginx = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' });
    await waitFor200(`${gw}/v2/health/live`, 10_000);
  }, 180_000);

  afterAll(async () => {
    for (const r of replicas) await r.stop();
    if (nginx && nginx.exitCode === null) {
      const done = new Promise((r) => nginx.once('exit', r));
      nginx.kill('SIGTERM'); // nginx's fast shutdown
      await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
      if (nginx.exitCode === null) nginx.kill('SIGKILL');
    }
    if (dir) await rm(dir, { recursive: true, force: true });
    await recordFigures('gateway', figures);
  }, 30_000);

  it('round-robins classify, score and v2 requests and carries x-request-id to the replica log and back', async () => {
    const rs: Outcome[] = [];
    for (const kind of ['classify', 'score', 'infer'] as const) for (let i = 0; i < 4; i++) rs.push(await send(kind, nextId('rr')));
    expect(failures(rs)).toEqual([]);
    const seen = await servedBy(rs.map((r) => r.id));
    for (const r of rs) expect(seen.get(r.id), r.id).toHaveLength(1); // served once, by one replica
    const onA = rs.filter((r) => seen.get(r.id)![0] === 0).length;
    figures.roundRobin = { a: onA, b: rs.length - onA };
    expect(onA).toBeGreaterThanOrEqual(4);
    expect(rs.length - onA).toBeGreaterThanOrEqual(4);

    // No id (or one the server would not accept): nginx's own $request_id, the same in the response and the replica's line.
    for (const header of [undefined, 'not a valid id!']) {
      const res = await fetch(`${gw}/v1/models/brown-lm-jr/score`, { method: 'POST', headers: { 'content-type': 'application/json', ...(header ? { 'x-request-id': header } : {}) }, body: JSON.stringify({ text: 'It was a long day .' }) });
      expect(res.status).toBe(200);
      const id = res.headers.get('x-request-id')!;
      expect(id).toMatch(/^[0-9a-f]{32}$/);
      expect((await servedBy([id])).get(id)).toHaveLength(1);
      // nginx writes the access-log line after the response: wait for it.
      await until(async () => (await readFile(join(dir, 'access.log'), 'utf8')).includes(`rid=${id}`), 5000);
    }
  }, 60_000);

  it('loses at most the in-flight requests when a replica is SIGKILLed under load, and none after', async () => {
    const [victim] = replicas;
    let killedAt = 0;
    let inflightAtKill = -1;
    const rs = await load(120, 4, ['classify', 'score', 'infer'], 'kill', (k, inflight) => {
      if (k === 30) {
        inflightAtKill = inflight.size;
        killedAt = Date.now();
        victim.child.kill('SIGKILL');
      }
    });
    expect(await victim.exited).toBe(-1);
    // The survivor's peak resident memory after serving everything (sizes the Kubernetes memory request).
    const peak = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${replicas[1].child.pid}/status`, 'utf8'));
    figures.survivorPeakRssMB = peak ? Math.round(Number(peak[1]) / 1024) : null;
    const failed = failures(rs);
    const errorLog = await readFile(join(dir, 'error.log'), 'utf8');
    figures.kill = { requests: rs.length, concurrency: 4, inflightAtKill, failed: failed.length, failedAfterKill: failed.filter((r) => r.t0 > killedAt).length, retriedByNginx: (errorLog.match(/while connecting to upstream|prematurely closed|reset by peer/g) ?? []).length };
    expect(failed.length, JSON.stringify(failed)).toBeLessThanOrEqual(inflightAtKill);
    expect(failed.filter((r) => r.t0 > killedAt)).toEqual([]);
    // The kill did hit traffic: nginx found the replica gone and went to the other one.
    expect(errorLog).toMatch(/connect\(\) failed \(111: Connection refused\)|prematurely closed|reset by peer/);
    expect(rs.filter((r) => r.t0 > killedAt).length).toBeGreaterThan(50);
  }, 120_000);

  it('sends traffic to the killed replica again once it restarts: requests that reach it during warm-up wait, none fail', async () => {
    const [victim] = replicas;
    // Let nginx's down mark from the kill (fail_timeout=5s) run out, as it would
    // for a replica that takes longer than that to come back.
    await new Promise((r) => setTimeout(r, 5500));
    const t0 = Date.now();
    victim.start();
    await waitFor200(`${victim.url}/v2/health/live`, 30_000, 20);
    let readyAt = 0;
    const ready = waitFor200(`${victim.url}/v2/health/ready`, 90_000, 20).then(() => { readyAt = Date.now(); });
    // Listening, not yet ready: nginx cannot see readiness and sends it requests.
    // Bounded: at most 40 sequential requests, until the restarted replica has
    // served 3 of them.
    const rs: Outcome[] = [];
    const onVictim = () => new Set(victim.requestLines().filter((l) => l.reqId.startsWith('back-')).map((l) => l.reqId));
    for (let i = 0; i < 40 && onVictim().size < 3; i++) rs.push(await send('classify', nextId('back')));
    await ready;
    const served = rs.filter((r) => onVictim().has(r.id));
    const duringWarmup = served.filter((r) => r.t0 < readyAt);
    figures.restart = {
      readySeconds: (readyAt - t0) / 1000, requests: rs.length, servedByRestarted: served.length,
      sentDuringWarmup: duringWarmup.length, slowestDuringWarmupMs: Math.max(0, ...duringWarmup.map((r) => r.t1 - r.t0)),
    };
    expect(failures(rs)).toEqual([]);
    expect(served.length).toBeGreaterThanOrEqual(3);
    // At least one request reached it while it was warming up, and waited instead of failing.
    expect(duringWarmup.length).toBeGreaterThan(0);
  }, 150_000);

  it('drains a replica on SIGTERM: in-flight requests finish, new ones go to the other replica, exit 0', async () => {
    const drained = replicas[1];
    const slowIds = Array.from({ length: 4 }, () => nextId('drain-slow'));
    const slow = slowIds.map((id) => send('slow', id, DRAIN_SLOW));
    // Signal once the replica is inside one of them (its own gauge says so), not after a guessed sleep.
    await until(async () => /deq_inflight_requests\{model="fashion-mnist-plain"\} [1-9]/.test(await (await fetch(`http://127.0.0.1:${drained.port}/metrics`)).text()));
    const signalledAt = Date.now();
    drained.child.kill('SIGTERM');
    // New work starts once the replica has taken the signal: anything it serves
    // after that must have been in flight before (the slow requests).
    for (let i = 0; i < 100 && drained.logTime('shutting down') === undefined; i++) await new Promise((r) => setTimeout(r, 20));
    const fast = await load(40, 2, ['classify', 'score'], 'drain');
    const slowRs = await Promise.all(slow);
    expect(await drained.exited).toBe(0);
    const all = [...slowRs, ...fast];
    expect(failures(all), JSON.stringify(failures(all))).toEqual([]);

    const shutdownAt = drained.logTime('shutting down')!;
    expect(shutdownAt).toBeGreaterThanOrEqual(signalledAt - 5);
    await servedBy(slowIds);
    // Only the test's own inference requests. A replica writes a request's log line when the
    // response has finished (onResponse), which can come after the client already has it: the
    // last until() poll of /metrics above could be logged after 'shutting down', as a 200 under
    // an id the replica made, and the test failed on it (3 of 4 runs on a 2-core box, #22).
    const after = drained.requestLines().filter((l) => l.time >= shutdownAt && sent.has(l.reqId) && !l.url.startsWith('/metrics'));
    const servedAfter = after.filter((l) => l.status === 200).map((l) => l.reqId);
    // Served after the signal: only requests that were already in flight (the slow ones sent before it).
    for (const id of servedAfter) expect(slowIds).toContain(id);
    expect(servedAfter.length).toBeGreaterThan(0); // the drain had real work to finish
    // Anything else that reached it was refused with 503 and retried by nginx on the other replica.
    const refused = after.filter((l) => l.status !== 200);
    for (const l of refused) expect(l.status).toBe(503);
    figures.drain = { slowInFlight: 4, servedAfterSignal: servedAfter.length, refused503ThenRetried: refused.length, fastRequests: fast.length, failed: failures(all).length };
    expect(drained.logs).toContain('server stopped; sessions released');
  }, 120_000);

  it('limits bodies and timeouts at the gateway as the server does', async () => {
    const text = await readFile(SHIPPED_CONF, 'utf8');
    const classifyBlock = /location ~ \^\/v1\/models\/\[\^\/\]\+\/classify\$ \{([^}]*)\}/.exec(text)![1];
    expect(bytes(directive(text, 'client_max_body_size'))).toBe(DEFAULT_CONFIG.bodyLimitBytes);
    expect(bytes(directive(classifyBlock, 'client_max_body_size'))).toBe(DEFAULT_CONFIG.imageLimitBytes);
    expect(seconds(directive(text, 'proxy_read_timeout')) * 1000).toBeGreaterThan(DEFAULT_CONFIG.requestTimeoutMs);
    const upstream = /upstream deq_serve \{([^}]*)\}/.exec(text)![1];
    expect(seconds(directive(upstream, 'keepalive_timeout')) * 1000).toBeLessThan(DEFAULT_CONFIG.keepAliveTimeoutMs); // the replicas close idle ones after this
    expect(seconds(directive(text, 'client_header_timeout')) * 1000).toBe(DEFAULT_CONFIG.headersTimeoutMs);
    expect(seconds(directive(text, 'client_body_timeout')) * 1000).toBe(DEFAULT_CONFIG.bodyTimeoutMs);

    const post = (path: string, type: string, size: number) =>
      fetch(`${gw}${path}`, { method: 'POST', headers: { 'content-type': type }, body: Buffer.alloc(size, 0x20) });
    const reached = async (id: string | null, settleMs = 3000) => id !== null && (await servedBy([id], settleMs)).has(id);
    // JSON just over 1 MiB: nginx refuses it; the replicas never see it.
    const big = await post('/v2/models/fashion-mnist-jr/infer', 'application/json', DEFAULT_CONFIG.bodyLimitBytes + 1024);
    expect(big.status).toBe(413);
    expect(big.headers.get('x-deq-error-code')).toBeNull();
    expect(await reached(big.headers.get('x-request-id'), 500)).toBe(false);
    // Just under: it reaches a replica, which judges it (not JSON → 400).
    const under = await post('/v2/models/fashion-mnist-jr/infer', 'application/json', DEFAULT_CONFIG.bodyLimitBytes - 1024);
    expect(under.status).toBe(400);
    expect(under.headers.get('x-deq-error-code')).not.toBeNull();
    expect(await reached(under.headers.get('x-request-id'))).toBe(true);
    // Images: just under 10 MiB reaches a replica, which judges it (spaces are no PNG: 415); just over stops at nginx.
    const img = await post('/v1/models/fashion-mnist-jr/classify', 'image/png', DEFAULT_CONFIG.imageLimitBytes - 1024);
    expect(img.status).toBe(415);
    expect(img.headers.get('x-deq-error-code')).not.toBeNull();
    expect(await reached(img.headers.get('x-request-id'))).toBe(true);
    const huge = await post('/v1/models/fashion-mnist-jr/classify', 'image/png', DEFAULT_CONFIG.imageLimitBytes + 1024);
    expect(huge.status).toBe(413);
    expect(huge.headers.get('x-deq-error-code')).toBeNull();
    expect(await reached(huge.headers.get('x-request-id'), 500)).toBe(false);
    // /metrics stays per replica.
    expect((await fetch(`${gw}/metrics`)).status).toBe(404);
  }, 60_000);
});
