// A clean install is quiet and honest: `npm ci` prints no warning on the Node the engines field names
// (no unknown .npmrc key, no package that wants a newer Node, no unreviewed install script), and
// onnxruntime-node's install script, which would download the CUDA provider from outside the npm
// registry, stays denied, so CUDA remains an install-time opt-in (README, "Execution providers").
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..');
const run = promisify(execFile);

describe('npm ci', () => {
  it('denies the install scripts of onnxruntime-node (CUDA download), sharp and esbuild', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };
    expect(pkg.allowScripts?.['onnxruntime-node']).toBe(false);
  });

  it('prints no warning (dry run of the lockfile in a scratch folder)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deq-npm-ci-'));
    try {
      for (const f of ['package.json', 'package-lock.json', '.npmrc']) copyFileSync(join(ROOT, f), join(dir, f));
      const { stdout, stderr } = await run('npm', ['ci', '--dry-run', '--no-audit', '--no-fund'], { cwd: dir, timeout: 120_000 });
      expect(stdout).toMatch(/^add /m); // it did resolve the tree
      expect(stderr.split('\n').filter((l) => /^npm (warn|WARN|ERR)/.test(l))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 150_000);
});
