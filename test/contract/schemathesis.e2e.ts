// schemathesis against the live server, from the document the server publishes: no 5xx (but the
// 504 of a deadline the request set itself), no status the document does not list, no response
// outside its schema. Bounded: --max-examples per operation and --max-time for the whole run.
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ROOT, startTestServer, type TestServer } from '../server/helpers.js';

const VENV = process.env.SCHEMATHESIS_VENV ?? join(ROOT, '.work', 'schemathesis-venv');
const MAX_TIME_S = Number(process.env.SCHEMATHESIS_MAX_TIME ?? 150);
const REPORT = join(ROOT, '.test-results', 'schemathesis');

let s: TestServer;
beforeAll(async () => {
  const setup = spawnSync('bash', [join(ROOT, 'test/contract/setup-schemathesis.sh'), VENV], { stdio: 'inherit', timeout: 600_000 });
  if (setup.status !== 0) throw new Error(`test/contract/setup-schemathesis.sh failed (status ${setup.status}): schemathesis comes from PyPI`);
  // Two workers, so one slow solve does not hold up the rest of the run.
  s = await startTestServer({ workers: 2 }, ['tiny-image', 'tiny-lm', 'tiny-tensor']);
});
afterAll(async () => {
  await s?.cleanup();
});

/** Runs schemathesis asynchronously: the server under test lives in this process. */
function schemathesis(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    // Run in the report folder: schemathesis keeps a crash cache (.schemathesis/) in its working directory.
    const child = spawn(join(VENV, 'bin', 'schemathesis'), args, { cwd: REPORT, env: { ...process.env, NO_COLOR: '1' } });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    // A hard stop well past --max-time, so a hung run cannot hold CI.
    const kill = setTimeout(() => child.kill('SIGKILL'), (MAX_TIME_S + 120) * 1000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(kill);
      resolve({ code, output });
    });
  });
}

it('finds no server error, no undocumented status and no schema violation', async () => {
  await mkdir(REPORT, { recursive: true });
  const { code, output } = await schemathesis([
    '--config-file', join(ROOT, 'test/contract/schemathesis.toml'), '--no-color',
    'run', `${s.url}/openapi.json`,
    '--checks', 'not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance',
    // One worker: with several threads, Python 3.11's ast module can fail inside hypothesis
    // ("AST constructor recursion depth mismatch", cpython#106905), a tool error, not a finding.
    '--max-examples', '25', '--max-time', String(MAX_TIME_S), '--workers', '1', '--request-timeout', '30',
    '--report', 'junit', '--report-junit-path', join(REPORT, 'junit.xml'),
  ]);
  await writeFile(join(REPORT, 'output.txt'), output);
  expect(output).toMatch(/API Operations:\s+Selected: 16\/16\s+Tested: 16/);
  expect(code, output.slice(-6000)).toBe(0);
});
