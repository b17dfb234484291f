// Issue #22 defect 8: a deployment suite that cannot run was skipped on a fresh machine
// and CI stayed green. Under CI=true such a suite must fail, naming what it lacked.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { inCi, ROOT } from './helpers.js';

async function runFixture(ci: string | undefined): Promise<{ failed: number; skipped: number; messages: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'deq-ci-skip-'));
  try {
    const report = join(dir, 'report.json');
    const env: NodeJS.ProcessEnv = { ...process.env, SKIP_REPORT: report };
    delete env.CI;
    if (ci !== undefined) env.CI = ci;
    await new Promise<void>((resolve) => {
      execFile(process.execPath, [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', '--config', 'test/deploy/fixtures/vitest.skipped.config.ts'], { cwd: ROOT, env, timeout: 60_000 }, () => resolve());
    });
    const r = JSON.parse(await readFile(report, 'utf8')) as { numFailedTests: number; numPendingTests: number; testResults: { assertionResults: { failureMessages: string[] }[] }[] };
    return { failed: r.numFailedTests, skipped: r.numPendingTests, messages: r.testResults.flatMap((f) => f.assertionResults.flatMap((a) => a.failureMessages)) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

it('a suite that cannot run fails under CI=true, and is skipped (with its reason printed) elsewhere', async () => {
  const ci = await runFixture('true');
  expect(ci.failed).toBe(1);
  expect(ci.messages.join('\n')).toMatch(/fixture could not run: needs a-tool-that-is-not-there/);
  const local = await runFixture(undefined);
  expect(local).toMatchObject({ failed: 0, skipped: 1 });
}, 120_000);

it('reads CI the way CI systems set it', () => {
  expect(inCi({ CI: 'true' })).toBe(true);
  expect(inCi({ CI: '1' })).toBe(true);
  expect(inCi({ CI: 'false' })).toBe(false);
  expect(inCi({})).toBe(false);
});
