import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { lmInferBody, makeModelsDir, NEVER_CONVERGES, postJson, until } from './helpers.js';

let child: ChildProcess;
let url = '';
let models: Awaited<ReturnType<typeof makeModelsDir>>;
let logs = '';

beforeAll(async () => {
  models = await makeModelsDir(['tiny-lm']);
  child = spawn(process.execPath, [fileURLToPath(new URL('./serve-child.mjs', import.meta.url)), '--port', '0', '--workers', '2'], {
    env: { ...process.env, DEQ_MODELS_DIR: models.dir, DEQ_LOG_LEVEL: 'info', DEQ_SHUTDOWN_GRACE_MS: '5000', DEQ_MAX_ITER_CAP: '100000', DEQ_BATCHING: 'off' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${logs}`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      logs += d.toString();
      const m = /READY (\S+)/.exec(logs);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.stderr!.on('data', (d: Buffer) => { logs += d.toString(); });
    child.on('exit', (code) => reject(new Error(`server exited early (${code}): ${logs}`)));
  });
});

afterAll(async () => {
  if (child.exitCode === null) child.kill('SIGKILL');
  await models?.cleanup();
});

it('on SIGTERM finishes in-flight requests, refuses new ones, releases sessions and exits 0', async () => {
  // Two solves running (one per worker), each ~1500 ms, in best-effort they'd 200; under "error" they 504 —
  // either way they must complete with a response, not a reset connection.
  const inflight = [0, 1].map(() => postJson(`${url}/v2/models/tiny-lm/infer`, lmInferBody(8, 16, { ...NEVER_CONVERGES, deadline_ms: 1500 })));
  const quick = postJson(`${url}/v2/models/tiny-lm/infer`, lmInferBody(1, 4)); // queued behind them
  // Ordered by the server's own state, not by sleeps: both solves on a worker, the quick one queued.
  await until(async () => {
    const m = await (await fetch(`${url}/metrics`)).text();
    return /deq_inflight_requests\{model="tiny-lm"\} 2\b/.test(m) && /deq_queued_requests\{model="tiny-lm"\} 1\b/.test(m);
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  await until(async () => logs.includes('"msg":"shutting down"'));

  // New work is refused: the listener is closed (connection refused) or answers 503.
  const late = await fetch(`${url}/v2/health/ready`).then((r) => r.status, () => 'refused');
  expect(['refused', 503]).toContain(late);

  const statuses = await Promise.all([...inflight, quick].map((p) => p.then((r) => r.status)));
  expect(statuses.slice(0, 2)).toEqual([504, 504]); // deadline reached, answered normally
  expect(statuses[2]).toBe(200);
  expect(await exited).toBe(0);
  expect(logs).toContain('server stopped; sessions released');
  // One request log line per request, never the bodies.
  const lines = logs.split('\n').filter((l) => l.includes('"msg":"request"'));
  expect(lines.length).toBeGreaterThanOrEqual(3);
  expect(logs).not.toContain('"data"');
}, 30_000);

