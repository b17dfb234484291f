// `--solver-kernel`: the workers' models use the kernel asked for, /v1/models says which, and
// answers agree with the default kernel's (the tiny fixture's solve is well-conditioned).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, startServer } from '../../dist/server/index.js';
import { lmInferBody, makeModelsDir, postJson, startTestServer, type TestServer } from './helpers.js';

const json = (r: Response): Promise<any> => r.json();

describe('--solver-kernel', () => {
  let f64: TestServer, f32: TestServer;
  beforeAll(async () => {
    f64 = await startTestServer({ solverKernel: 'wasm' });
    f32 = await startTestServer({ solverKernel: 'wasm-f32' });
  });
  afterAll(async () => {
    await f64?.cleanup();
    await f32?.cleanup();
  });

  it('is reported per model', async () => {
    expect((await json(await fetch(`${f32.url}/v1/models/tiny-image`))).solver_kernel).toBe('wasm-f32');
    expect((await json(await fetch(`${f64.url}/v1/models/tiny-lm`))).solver_kernel).toBe('wasm');
  });

  it('gives the same answers as the float64 kernel within 1e-5', async () => {
    const body = lmInferBody(3, 7, { tol: 1e-4 });
    const [a, b] = await Promise.all([f64, f32].map(async (s) => json(await postJson(`${s.url}/v2/models/tiny-lm/infer`, body))));
    expect(a.outputs.length).toBeGreaterThan(0);
    for (let o = 0; o < a.outputs.length; o++) {
      const x: number[] = a.outputs[o].data, y: number[] = b.outputs[o].data;
      expect(y.length).toBe(x.length);
      let scale = 0;
      for (const v of x) scale = Math.max(scale, Math.abs(v));
      for (let i = 0; i < x.length; i++) expect(Math.abs(y[i] - x[i])).toBeLessThanOrEqual(1e-5 * scale);
    }
    expect(b.parameters.iterations).toEqual(a.parameters.iterations);
  });
});

describe('--solver-kernel auto (the default): each model its manifest\'s precision', () => {
  it('runs float32 kernels for a bundle that declares solver.precision "float32", float64 for the others; a kernel name overrides', async () => {
    const { dir, cleanup } = await makeModelsDir();
    const file = join(dir, 'tiny-image', 'manifest.json');
    const manifest = JSON.parse(await readFile(file, 'utf8'));
    manifest.solver.precision = 'float32';
    await writeFile(file, JSON.stringify(manifest));
    const kernels = async (overrides: object) => {
      const server = await startServer(loadConfig([], {}, { port: 0, host: '127.0.0.1', modelsDir: dir, workers: 1, logLevel: 'silent', ...overrides }));
      try {
        return await Promise.all(['tiny-image', 'tiny-lm'].map(async (m) => (await json(await fetch(`${server.url}/v1/models/${m}`))).solver_kernel));
      } finally {
        await server.close();
      }
    };
    try {
      expect(loadConfig([], {}).solverKernel).toBe('auto');
      expect(await kernels({})).toEqual(['wasm-f32', 'wasm']);
      expect(await kernels({ solverKernel: 'wasm' })).toEqual(['wasm', 'wasm']);
    } finally {
      await cleanup();
    }
  });
});
