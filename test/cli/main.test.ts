import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { scratchCopy, TINY_IMAGE, TINY_LM, TINY_TENSOR } from '../helpers/fixtures.js';

const MODELS_DIR = resolve(import.meta.dirname, '..', '..', 'models');
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => { await Promise.all(cleanups.map((c) => c())); });

async function scratch(bundle: string): Promise<string> {
  const s = await scratchCopy(bundle);
  cleanups.push(s.cleanup);
  return s.dir;
}

describe('deq-serve inspect', () => {
  it('passes parity on both fixtures', async () => {
    for (const b of [TINY_IMAGE, TINY_LM]) {
      const r = await runCli(['inspect', b, '--json']);
      expect(r.code).toBe(0);
      const report = JSON.parse(r.stdout);
      expect(report.parity.passed).toBe(true);
      expect(report.parity.maxDeviation).toBeLessThan(1e-3);
    }
  });

  it('exits 1 when the reference outputs disagree with the runtime', async () => {
    const dir = await scratch(TINY_IMAGE);
    const parityPath = join(dir, 'parity.json');
    const parity = JSON.parse(await readFile(parityPath, 'utf8'));
    parity.cases[0].outputs.logits[0] += 0.01;
    const text = JSON.stringify(parity);
    await writeFile(parityPath, text);
    const manifestPath = join(dir, 'manifest.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
    manifest.parity.sha256 = createHash('sha256').update(text).digest('hex');
    await writeFile(manifestPath, JSON.stringify(manifest));
    const r = await runCli(['inspect', dir]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/parity\s+FAIL/);
  });

  it('names the solver\'s own settings: damping for a fixed-point bundle, history for Broyden', async () => {
    const dir = await scratch(TINY_IMAGE);
    const manifestPath = join(dir, 'manifest.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
    expect((await runCli(['inspect', dir])).stdout).toMatch(/solver\s+broyden, .*history 8/);
    manifest.solver = { ...manifest.solver, method: 'fixed-point', damping: 0.5, max_iter: 200 };
    await writeFile(manifestPath, JSON.stringify(manifest));
    const line = (await runCli(['inspect', dir])).stdout.split('\n').find((l) => l.trim().startsWith('solver'));
    expect(line).toMatch(/fixed-point, .*damping 0\.5/);
    expect(line).not.toContain('history');
  });

  it('reports a damaged bundle with its error code', async () => {
    const dir = await scratch(TINY_IMAGE);
    await writeFile(join(dir, 'cell.onnx'), 'not onnx');
    const r = await runCli(['inspect', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('DEQ_ERR_BUNDLE_CHECKSUM');
    expect(r.stderr).toContain('cell.onnx');
  });
});

describe('deq-serve run', () => {
  it('runs a JSON input and prints outputs and solver stats', async () => {
    const dir = await scratch(TINY_IMAGE);
    const parity = JSON.parse(await readFile(join(TINY_IMAGE, 'parity.json'), 'utf8'));
    const input = join(dir, 'x.json');
    await writeFile(input, JSON.stringify({ input: parity.cases[0].input.data }));
    // A flat array of exactly one sample's values (64 for [1, 8, 8]) is that sample, as the nested one.
    const flat = await runCli(['run', TINY_IMAGE, '--input', input, '--tol', '1e-5', '--max-iter', '100']);
    expect(flat.stderr).toBe('');
    expect(flat.code).toBe(0);
    const fo = JSON.parse(flat.stdout);
    expect(fo.outputs.logits.dims).toEqual([1, 3]);
    fo.outputs.logits.data.forEach((v: number, k: number) => expect(Math.abs(v - parity.cases[0].outputs.logits[k])).toBeLessThan(1e-3));
    // Any other flat length is refused, naming the shapes it takes.
    await writeFile(input, JSON.stringify({ input: parity.cases[0].input.data.slice(1) }));
    const short = await runCli(['run', TINY_IMAGE, '--input', input]);
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/shape \[63\].*\[1,8,8\] per sample.*flat array of 64 values.*DEQ_ERR_INVALID_INPUT/);

    const nested = (d: number[]) => [Array.from({ length: 8 }, (_, r) => d.slice(r * 8, r * 8 + 8))];
    await writeFile(input, JSON.stringify({ input: [nested(parity.cases[0].input.data), nested(parity.cases[1].input.data)] }));
    const r = await runCli(['run', TINY_IMAGE, '--input', input, '--tol', '1e-5', '--max-iter', '100']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.outputs.logits.dims).toEqual([2, 3]);
    for (const [i, c] of [parity.cases[0], parity.cases[1]].entries()) {
      const got = out.outputs.logits.data.slice(i * 3, i * 3 + 3);
      got.forEach((v: number, k: number) => expect(Math.abs(v - c.outputs.logits[k])).toBeLessThan(1e-3));
      expect(out.solver.samples[i].converged).toBe(true);
    }
    expect(out.solver.tol).toBe(1e-5);
    // Early exit: --patience stops on a stable top-1 before the tight tol, and says so per sample.
    const early = await runCli(['run', TINY_IMAGE, '--input', input, '--tol', '1e-6', '--max-iter', '100', '--patience', '1', '--prediction-tol', '1', '--prediction-margin', '0']);
    expect(early.code).toBe(0);
    const eo = JSON.parse(early.stdout);
    expect(eo.solver.samples.map((x: any) => x.stop_reason)).toEqual(['prediction', 'prediction']);
    expect(eo.solver.samples[0].iterations).toBeLessThan(out.solver.samples[0].iterations);
  });

  it('runs a model with several named inputs from { "inputs": {...} }', async () => {
    const dir = await scratch(TINY_TENSOR);
    const c = JSON.parse(await readFile(join(TINY_TENSOR, 'parity.json'), 'utf8')).cases[0];
    const input = join(dir, 'named.json');
    await writeFile(input, JSON.stringify({ inputs: { x: c.inputs.x.data, ids: c.inputs.ids.data } }));
    const r = await runCli(['run', TINY_TENSOR, '--input', input]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.outputs.b.shape).toEqual([2, 2]);
    out.outputs.b.data.flat().forEach((v: number, k: number) => expect(Math.abs(v - c.outputs.b[k])).toBeLessThan(1e-4));
    expect(out.solver.samples[0].converged).toBe(true);
  });

  it('reads .npy inputs', async () => {
    const dir = await scratch(TINY_IMAGE);
    const parity = JSON.parse(await readFile(join(TINY_IMAGE, 'parity.json'), 'utf8'));
    const data = Float32Array.from(parity.cases[0].input.data);
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 8, 8), }";
    header = header.padEnd(118 - 1, ' ') + '\n';
    const buf = Buffer.concat([Buffer.from('\x93NUMPY\x01\x00', 'latin1'), Buffer.from([header.length, 0]), Buffer.from(header, 'latin1'), Buffer.from(data.buffer)]);
    const file = join(dir, 'x.npy');
    await writeFile(file, buf);
    const r = await runCli(['run', TINY_IMAGE, '--input', file]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    const want = parity.cases[0].outputs.logits;
    out.outputs.logits.data.forEach((v: number, k: number) => expect(Math.abs(v - want[k])).toBeLessThan(1e-2));
  });

  it('rejects bad flags with exit code 2', async () => {
    const r = await runCli(['run', TINY_IMAGE, '--input', 'x.json', '--solver', 'newton']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--solver must be one of broyden, anderson, fixed-point');
    expect((await runCli(['frobnicate'])).code).toBe(2);
  });
});

describe('deq-serve bench', () => {
  it('splits one run\'s solve into ONNX time and solver time, in snake_case, and the parts add up', async () => {
    const r = await runCli(['bench', TINY_IMAGE, '--runs', '20', '--warmup', '2']);
    expect(r.code).toBe(0);
    const b = JSON.parse(r.stdout);
    for (const key of Object.keys(b)) expect(key).toMatch(/^[a-z0-9_]+$/);
    expect(b.cell_ms).toBeGreaterThan(0);
    expect(b.solve_ms).toBeGreaterThanOrEqual(b.cell_ms);
    expect(b.cell_ms + b.solver_ms).toBeCloseTo(b.solve_ms, 9);
    expect(b.inject_ms + b.solve_ms + b.head_ms).toBeLessThanOrEqual(b.total_ms + 1e-9);
    expect(b.solver_fraction).toBeCloseTo(b.solver_ms / b.solve_ms, 9);
    expect(b.solver_fraction).toBeGreaterThan(0);
    expect(b.solver_fraction).toBeLessThan(1);
    expect(b.nfe_mean).toBeGreaterThan(1);
  });
});

describe('deq-serve serve', () => {
  it('refuses an invalid setting at startup, naming it', async () => {
    const r = await runCli(['serve', '--port', 'eighty']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--port');
    expect(r.stderr).toContain('DEQ_ERR_CONFIG_INVALID');
  });

  it('lists every setting with its environment variable', async () => {
    const r = await runCli(['serve', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--models-dir');
    expect(r.stdout).toContain('DEQ_MODELS_DIR');
  });
});

describe('deq-serve <command> --help (#9)', () => {
  it('prints each command\'s own usage and exits 0', async () => {
    for (const cmd of ['serve', 'inspect', 'run', 'eval', 'score', 'bench', 'bench solve', 'bench compare', 'bench http']) {
      const r = await runCli([...cmd.split(' '), '--help']);
      expect({ cmd, code: r.code, stderr: r.stderr }).toEqual({ cmd, code: 0, stderr: '' });
      expect(r.stdout.startsWith(`deq-serve ${cmd}`)).toBe(true);
    }
  });

  it('serve --help shows each setting\'s default and the --ep spelling', async () => {
    const r = await runCli(['serve', '--help']);
    expect(r.stdout).toMatch(/--port\s+DEQ_PORT\s+.*\[default: 8080\]/);
    expect(r.stdout).toMatch(/--providers\s+DEQ_PROVIDERS\s+.*\[default: cpu\]/);
    expect(r.stdout).toContain('--ep is another name for --providers');
  });

  it('the top-level help lists the bench subcommands', async () => {
    const r = await runCli(['--help']);
    for (const sub of ['bench solve', 'bench compare', 'bench http']) expect(r.stdout).toContain(`deq-serve ${sub} `);
  });
});

describe('deq-serve inspect with solver flags (#9)', () => {
  it('solves the parity cases with the flags it is given, and says so', async () => {
    // Two fixed-point steps are far from the fixed point the reference outputs were made at.
    const r = await runCli(['inspect', TINY_IMAGE, '--json', '--solver', 'fixed-point', '--max-iter', '2']);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout);
    expect(report.parity.passed).toBe(false);
    expect(report.parity.solver_overrides).toEqual({ maxIter: 2, method: 'fixed-point' });
    expect(report.parity.cases.every((c: { iterations: number }) => c.iterations === 2)).toBe(true);
  });
});

describe('deq-serve errors for common mistakes: one line, what to do, no stack trace', () => {
  it('serve on a port in use names the port and the setting to change', async () => {
    const { createServer } = await import('node:net');
    const blocker = createServer();
    await new Promise<void>((done) => blocker.listen(0, '127.0.0.1', done));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = await runCli(['serve', '--port', String(port), '--host', '127.0.0.1', '--models-dir', MODELS_DIR], 60_000);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`127.0.0.1:${port} is already in use`);
      expect(r.stderr).toContain('--port N (DEQ_PORT)');
      expect(r.stderr).not.toMatch(/^\s+at /m);
    } finally {
      blocker.close();
    }
  });

  it('a provider fallback is reported with its reason, not silent', async () => {
    const dir = await scratch(TINY_IMAGE);
    const parity = JSON.parse(await readFile(join(TINY_IMAGE, 'parity.json'), 'utf8'));
    const input = join(dir, 'x.json');
    const rows = parity.cases[0].input.data as number[];
    await writeFile(input, JSON.stringify({ input: [Array.from({ length: 8 }, (_, k) => rows.slice(k * 8, k * 8 + 8))] }));
    const r = await runCli(['run', TINY_IMAGE, '--input', input, '--ep', 'cuda,cpu']);
    expect(r.code, r.stderr).toBe(0);
    // One line of ours with the reason; none of ONNX Runtime's native log lines.
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^deq-serve: tiny-image runs on cpu: cuda: \S/);
  });

  it('run with a missing --input file says so', async () => {
    const r = await runCli(['run', TINY_IMAGE, '--input', '/nonexistent/x.json']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe('deq-serve: --input /nonexistent/x.json: no such file [DEQ_ERR_CONFIG_INVALID]');
  });
});
