// The docs check: every shell block of README.md and docs/ not marked "# not run by the docs check: …"
// runs as written, in a scratch folder that sees the checkout's dist/, models/ and test/ fixtures, with
// `127.0.0.1:8080` pointed at a server started from the shipped models on a free loopback port. A line
// that starts a server is run, waited for until ready and stopped. curl fails on an HTTP error, so an
// example that answers 4xx/5xx fails the check.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isServe, shellBlocks } from './doc-commands.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const runnable = shellBlocks(ROOT).filter((b) => !b.skip);
let work = '';
let port = 0;
let server: ChildProcess | undefined;

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port: p } = s.address() as { port: number };
      s.close(() => done(p));
    });
  });
}

async function waitReady(p: number, child: ChildProcess, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}`);
    try {
      if ((await fetch(`http://127.0.0.1:${p}/v2/health/ready`)).ok) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`not ready on port ${p} within ${ms} ms`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

/** A serve line as written, on a free port instead of the one it names (or the default 8080). */
async function runServe(line: string): Promise<void> {
  const p = await freePort();
  const args = line.replace(/\s+#.*$/, '').replace(/^(node\s+dist\/cli\/main\.js|deq-serve)\s+/, '').replace(/\s--port\s+\d+/, '');
  const child = spawn('bash', ['-c', `exec node dist/cli/main.js ${args} --port ${p}`], { cwd: work, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  try {
    await waitReady(p, child, 60_000);
  } catch (err) {
    throw new Error(`${line}: ${(err as Error).message}\n${stderr}`);
  } finally {
    await stop(child);
  }
}

function runBash(script: string): Promise<{ code: number; out: string }> {
  const prelude = [
    'set -eo pipefail',
    // An example that answers an HTTP error fails, with the body shown.
    'curl() { command curl --fail-with-body --max-time 60 "$@"; }',
  ].join('\n');
  return new Promise((done) => {
    execFile('bash', ['-c', `${prelude}\n${script}`], { cwd: work, timeout: 150_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      done({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, out: `${stdout}\n${stderr}` });
    });
  });
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'deq-docs-'));
  for (const name of ['dist', 'models', 'test', 'node_modules', 'bench', 'package.json', 'exporter', 'deploy', 'docs']) {
    symlinkSync(join(ROOT, name), join(work, name));
  }
  port = await freePort();
  server = spawn(process.execPath, ['dist/cli/main.js', 'serve', '--port', String(port)], { cwd: work, stdio: 'ignore' });
  await waitReady(port, server, 90_000);
});

afterAll(async () => {
  if (server) await stop(server);
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('docs check: the shell blocks run as written', () => {
  it('has blocks to run', () => {
    expect(runnable.length).toBeGreaterThan(10);
  });

  it.each(runnable.map((b) => [b.where, b]))('%s', async (_where, block) => {
    // Consecutive non-server lines run as one script, so a file one line writes is there for the next.
    let pending: string[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      const script = pending.join('\n').replace(/(127\.0\.0\.1|localhost):8080\b/g, `127.0.0.1:${port}`);
      pending = [];
      const r = await runBash(script);
      expect(r.code, `${block.where}\n${script}\n${r.out.slice(-3000)}`).toBe(0);
    };
    for (const line of block.lines) {
      if (isServe(line)) {
        await flush();
        await runServe(line);
      } else {
        pending.push(line);
      }
    }
    await flush();
  });
});
