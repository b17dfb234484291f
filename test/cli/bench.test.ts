import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { FASHION_MNIST_SLICE } from '../helpers/fixtures.js';

const JR = resolve(import.meta.dirname, '..', '..', 'models', 'fashion-mnist-jr');

describe('deq-serve bench solve / compare', () => {
  let dir: string;
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'deq-bench-test-')); });
  afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

  it('bench solve --json prints rows per batch and kernel and rss rows, and writes the Markdown table', async () => {
    const out = join(dir, 'solve.md');
    const r = await runCli(['bench', 'solve', JR, '--json', '--batches', '1,2', '--images', '2', '--rss-max-iters', '3', '--data-dir', FASHION_MNIST_SLICE, '--out', out], 120_000);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.rows.map((x: { batch: number; kernel: string }) => `${x.batch}/${x.kernel}`)).toEqual(['1/js', '1/wasm', '1/wasm-f32', '2/js', '2/wasm', '2/wasm-f32']);
    for (const row of report.rows) {
      expect(row.nfe_mean).toBeGreaterThan(1);
      expect(row.cell_ms).toBeGreaterThan(0);
      expect(row.solver_fraction).toBeGreaterThan(0);
      expect(row.solver_fraction).toBeLessThan(1);
    }
    expect(report.rss).toHaveLength(1);
    expect(report.rss[0]).toMatchObject({ max_iter: 3, nfe_mean: 3 });
    expect(report.rss[0].peak_rss_mb).toBeGreaterThan(10);
    expect(await readFile(out, 'utf8')).toContain('| 2 | wasm-f32 |');
  });

  it('bench compare agrees with the recipe\'s PyTorch model where torch is installed, and exits 2 where it is not', async () => {
    const torch = spawnSync('/usr/bin/python3', ['-c', 'import torch, onnx, numpy'], { timeout: 120_000 }).status === 0;
    const r = await runCli(['bench', 'compare', JR, '--json', '--batches', '1,2', '--threads', '1', '--images', '4', '--rounds', '1', '--data-dir', FASHION_MNIST_SLICE, '--out', join(dir, 'compare.md')], 300_000);
    if (!torch) {
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/bench compare needs PyTorch/);
      return;
    }
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.rows.map((x: { batch: number }) => x.batch)).toEqual([1, 2]);
    for (const row of report.rows) {
      // Same weights, same solver settings: the contractive JR model lands on the same answers.
      expect(row.max_abs_diff).toBeLessThan(1e-3);
      expect(row.nfe_deq_serve).toBe(row.nfe_pytorch);
      expect(row.accuracy_deq_serve).toBe(row.accuracy_pytorch);
      expect(row.speedup).toBeGreaterThan(0);
    }
  }, 320_000);

  it('bench compare exits 2 with a clear message when the PyTorch interpreter is missing', async () => {
    const r = await runCli(['bench', 'compare', JR, '--python', join(dir, 'no-such-python')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bench compare needs PyTorch/);
  });
});
