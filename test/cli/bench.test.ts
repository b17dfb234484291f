import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { FASHION_MNIST_SLICE } from '../helpers/fixtures.js';

const JR = resolve(import.meta.dirname, '..', '..', 'models', 'fashion-mnist-jr');
const LM = resolve(import.meta.dirname, '..', '..', 'models', 'brown-lm-jr');

/** Whether the recipes' interpreter can import what bench compare's PyTorch side needs. */
function torchInstalled(): boolean {
  return spawnSync('/usr/bin/python3', ['-c', 'import torch, onnx, numpy'], { timeout: 120_000 }).status === 0;
}

/** Without torch, bench compare must say so and exit 2 (a check of its own, not a skip). */
function expectNeedsTorch(r: { code: number | null; stderr: string }): void {
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/bench compare needs PyTorch/);
}

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
      // One run's figures, so they add up (per-column medians did not: 0.402 ms solve, 0.066 solver, "7.8%").
      expect(row.cell_ms + row.solver_ms).toBeCloseTo(row.solve_ms, 9);
      expect(row.solver_fraction).toBeCloseTo(row.solver_ms / row.solve_ms, 9);
    }
    expect(report.rss).toHaveLength(1);
    expect(report.rss[0]).toMatchObject({ max_iter: 3, nfe_mean: 3 });
    expect(report.rss[0].peak_rss_mb).toBeGreaterThan(10);
    expect(await readFile(out, 'utf8')).toContain('| 2 | wasm-f32 |');
  });

  it('bench solve without --out prints its Markdown and writes nothing into the working directory', async () => {
    const cwd = await mkdtemp(join(tmpdir(), 'deq-bench-cwd-'));
    try {
      const r = await runCli(['bench', 'solve', JR, '--batches', '1', '--kernels', 'wasm', '--images', '1', '--rss-max-iters', '', '--data-dir', FASHION_MNIST_SLICE], 120_000, cwd);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('| 1 | wasm |');
      expect(r.stdout).not.toContain('written to');
      expect(await readdir(cwd, { recursive: true })).toEqual([]);
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  });

  it('bench compare agrees with the recipe\'s PyTorch model where torch is installed, and exits 2 where it is not', async () => {
    const r = await runCli(['bench', 'compare', JR, '--json', '--batches', '1,2', '--threads', '1', '--images', '4', '--rounds', '1', '--data-dir', FASHION_MNIST_SLICE, '--out', join(dir, 'compare.md')], 300_000);
    if (!torchInstalled()) return expectNeedsTorch(r);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.rows.map((x: { batch: number }) => x.batch)).toEqual([1, 2]);
    for (const row of report.rows) {
      // Same weights, same solver settings: the contractive JR model lands on the same answers.
      expect(row.max_abs_diff).toBeLessThan(1e-3);
      expect(row.nfe_deq_serve).toBe(row.nfe_pytorch);
      expect(row.accuracy_deq_serve).toBe(row.accuracy_pytorch);
      expect(row.speedup).toBeGreaterThan(0);
      // The solver's part of deq-serve's time, and the speed-up without it.
      expect(row.deq_serve_solver_ms).toBeGreaterThan(0);
      expect(row.deq_serve_solver_ms).toBeLessThan(row.deq_serve_ms);
      expect(row.speedup_solver_free).toBeCloseTo(row.pytorch_ms / (row.deq_serve_ms - row.deq_serve_solver_ms), 6);
    }
  }, 320_000);

  it('bench compare scores the same Brown windows as the recipe\'s PyTorch language model where torch is installed, and exits 2 where it is not', async () => {
    const out = join(dir, 'compare-lm.md');
    const r = await runCli(['bench', 'compare', LM, '--json', '--batches', '1,2', '--threads', '1', '--windows', '4', '--rounds', '1', '--out', out], 300_000);
    if (!torchInstalled()) return expectNeedsTorch(r);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ model: 'brown-lm-jr', task: 'language-model', context: 64, stride: 32 });
    // The PyTorch side reproduced parity.json with the weights it read from the graphs.
    expect(report.pytorch_parity.cases).toBe(3);
    expect(report.pytorch_parity.max_abs_diff).toBeLessThan(1e-3);
    expect(report.rows.map((x: { batch: number }) => x.batch)).toEqual([1, 2]);
    for (const row of report.rows) {
      // 4 full windows at stride 32: 64 + 3 × 32 tokens, each scored once.
      expect(row).toMatchObject({ threads: 1, windows: 4, tokens: 160 });
      // Same weights, same windows, same Broyden settings: same solves and log-probabilities.
      expect(Math.abs(row.nfe_deq_serve - row.nfe_pytorch)).toBeLessThanOrEqual(1);
      expect(row.nfe_deq_serve).toBeGreaterThan(1);
      expect(row.max_abs_diff).toBeLessThan(1e-3);
      expect(Math.abs(row.mean_logprob_deq_serve - row.mean_logprob_pytorch)).toBeLessThan(1e-4);
      expect(row.perplexity_deq_serve).toBeCloseTo(Math.exp(-row.mean_logprob_deq_serve), 6);
      // A trained model on held-out text: far better than uniform over 14,116 words.
      expect(row.perplexity_deq_serve).toBeGreaterThan(20);
      expect(row.perplexity_deq_serve).toBeLessThan(2000);
      expect(row.tokens_per_s_deq_serve).toBeCloseTo((1000 * row.tokens) / (row.windows * row.deq_serve_ms), 6);
      expect(row.tokens_per_s_pytorch).toBeCloseTo((1000 * row.tokens) / (row.windows * row.pytorch_ms), 6);
      expect(row.speedup).toBeCloseTo(row.pytorch_ms / row.deq_serve_ms, 6);
    }
    const md = await readFile(out, 'utf8');
    expect(md).toContain('tokens/s');
    expect(md).toContain('| 2 | 1 | 4 |');
  }, 320_000);

  it('bench compare exits 2 with a clear message when the PyTorch interpreter is missing', async () => {
    const r = await runCli(['bench', 'compare', JR, '--python', join(dir, 'no-such-python')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bench compare needs PyTorch/);
  });

  it('bench compare refuses a count for the other kind of model instead of ignoring it', async () => {
    // Checked before PyTorch is looked for, so the answer is the same with or without torch.
    const image = await runCli(['bench', 'compare', JR, '--windows', '8', '--python', join(dir, 'no-such-python')]);
    expect(image.code).toBe(2);
    expect(image.stderr).toMatch(/--windows: fashion-mnist-jr is not a language model/);
    const lm = await runCli(['bench', 'compare', LM, '--images', '8', '--python', join(dir, 'no-such-python')]);
    expect(lm.code).toBe(2);
    expect(lm.stderr).toMatch(/--images: brown-lm-jr is a language model/);
  });
});

describe('deq-serve bench --solver-placement', () => {
  it('device: the solve keeps its state on the provider and still converges on the parity input', async () => {
    const r = await runCli(['bench', JR, '--runs', '2', '--warmup', '1', '--solver-placement', 'device'], 120_000);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.solver_placement).toBe('device');
    expect(report.nfe_mean).toBeGreaterThan(1);
    expect(report.nfe_mean).toBeLessThan(30);
  });

  it('refuses an unknown placement, naming the flag', async () => {
    const r = await runCli(['bench', JR, '--solver-placement', 'gpu'], 60_000);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--solver-placement must be one of host, device/);
  });
});

describe('deq-serve bench http --compare', () => {
  it('says what it is doing while it starts each server, on stderr when stdout carries --json', async () => {
    const r = await runCli(['bench', 'http', '--compare', '--modes', 'off', '--traffic', 'tiny-image', '--concurrency', '1', '--duration', '0.3',
      '--max-requests', '5', '--warmup', '0', '--models-dir', resolve(import.meta.dirname, '..', 'fixtures', 'tiny-image'), '--server-args=--workers 1',
      '--data-dir', FASHION_MNIST_SLICE, '--json'], 120_000);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toBe('starting deq-serve --batching off …');
    expect(lines[1]).toMatch(/^ready at http:\/\/127\.0\.0\.1:\d+ in \d+\.\d s$/);
    expect(lines[2]).toMatch(/^off c=1: /);
    expect(JSON.parse(r.stdout).rows).toHaveLength(1);
  });
});
