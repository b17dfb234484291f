// Regression tests for issue #12 items 10 and 11: shutdown under load ends with
// the documented exit code, and every request gets an HTTP answer, never a reset.
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { lmInferBody, makeModelsDir, NEVER_CONVERGES, postJson, ROOT } from './helpers.js';

interface Child { proc: ChildProcess; url: string; logs: () => string; exit: Promise<{ code: number | null; signal: string | null }> }
const children: Child[] = [];
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  for (const f of cleanups.splice(0)) await f();
});

async function serve(modelsDir: string, env: Record<string, string>): Promise<Child> {
  let logs = '';
  const proc = spawn(process.execPath, [fileURLToPath(new URL('./serve-child.mjs', import.meta.url)), '--port', '0'], {
    env: { ...process.env, DEQ_MODELS_DIR: modelsDir, DEQ_LOG_LEVEL: 'info', DEQ_MAX_ITER_CAP: '100000', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${logs}`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      logs += d.toString();
      const m = /READY (\S+)/.exec(logs);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.stderr!.on('data', (d: Buffer) => { logs += d.toString(); });
    void exit.then(() => { clearTimeout(timer); reject(new Error(`server exited early: ${logs}`)); });
  });
  const c = { proc, url, logs: () => logs, exit };
  children.push(c);
  return c;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('a second SIGTERM during a solve exits 1, not abort (134)', async () => {
  // brown-lm-jr scoring a 20,000-character text, 64 windows per solve: each
  // native run is long enough that the second signal usually lands inside
  // ONNX Runtime, where an immediate exit aborted (2 of 3 tries before the fix).
  const dir = await mkdtemp(join(tmpdir(), 'deq-sig-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  await cp(join(ROOT, 'models/brown-lm-jr'), join(dir, 'brown-lm-jr'), { recursive: true });
  for (let round = 0; round < 2; round++) {
    const c = await serve(dir, { DEQ_WORKERS: '1', DEQ_SCORE_BATCH: '64' });
    const body = { text: 'a '.repeat(10_000), ...NEVER_CONVERGES };
    const pending = postJson(`${c.url}/v1/models/brown-lm-jr/score`, body).then((r) => r.status, () => 'reset');
    await sleep(800 + round * 150);
    c.proc.kill('SIGTERM');
    await sleep(200);
    c.proc.kill('SIGTERM');
    const { code, signal } = await c.exit;
    expect(c.logs()).not.toMatch(/terminate called|Napi::Error/);
    expect({ code, signal }).toEqual({ code: 1, signal: null });
    expect(await pending).toBe(503);
  }
}, 90_000);

it('requests queued or running when the grace period ends get 503 DEQ_ERR_SHUTTING_DOWN, not resets', async () => {
  const models = await makeModelsDir(['tiny-lm']);
  cleanups.push(models.cleanup);
  const c = await serve(models.dir, { DEQ_WORKERS: '1', DEQ_SHUTDOWN_GRACE_MS: '800' });
  const long = () => postJson(`${c.url}/v2/models/tiny-lm/infer`, lmInferBody(8, 16, { ...NEVER_CONVERGES, deadline_ms: 20_000 }));
  const answers = [long(), long(), long()].map((p) => p.then(async (r) => ({ status: r.status, code: r.headers.get('x-deq-error-code'), body: await r.json() }), (e: Error) => ({ status: 'reset', code: e.message, body: null })));
  await sleep(400); // one running, two queued
  c.proc.kill('SIGTERM');
  const got = await Promise.all(answers);
  for (const a of got) {
    expect(a.status).toBe(503);
    expect(a.code).toBe('DEQ_ERR_SHUTTING_DOWN');
    expect(a.body).toEqual({ error: expect.stringMatching(/shut down/) });
  }
  expect(await c.exit).toEqual({ code: 0, signal: null });
}, 60_000);
