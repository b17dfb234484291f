import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeqModel, type ModelOptions } from '../../src/runtime/deq-model.js';
import { checkParity } from '../../src/runtime/parity.js';
import { DeqError } from '../../src/errors.js';
import { expectClose } from '../helpers/float.js';
import { scratchCopy, TINY_IMAGE, TINY_LM } from '../helpers/fixtures.js';

describe('DeqModel on the tiny image fixture', () => {
  let model: DeqModel;
  beforeAll(async () => { model = await DeqModel.load(TINY_IMAGE); });
  afterAll(async () => { await model.release(); });

  it('passes its parity vectors with the same argmax', async () => {
    const report = await checkParity(model);
    expect(report.cases.length).toBeGreaterThan(0);
    expect(report.passed).toBe(true);
    expect(report.maxDeviation).toBeLessThan(report.atol);
    for (const c of report.cases) expect(c.argmaxMatch).toBe(true);
  });

  it('gives each sample of a batch the same answer it gets alone', async () => {
    const parity = model.bundle.parity!;
    const inputs = parity.cases.map((c) => Float32Array.from(c.input!.data));
    const per = inputs[0].length;
    const batched = new Float32Array(per * inputs.length);
    inputs.forEach((x, i) => batched.set(x, i * per));
    const solver = { tol: 1e-5, maxIter: 100 };
    const together = await model.infer({ input: batched, batch: inputs.length, solver });
    const logits = together.outputs.logits.data as Float32Array;
    const classes = logits.length / inputs.length;
    for (const [i, x] of inputs.entries()) {
      const alone = await model.infer({ input: x, batch: 1, solver });
      expectClose(logits.subarray(i * classes, (i + 1) * classes), alone.outputs.logits.data as Float32Array, 1e-4);
      expect(together.solver.converged[i]).toBe(1);
    }
    expect(together.timing.cellMs).toBeLessThanOrEqual(together.timing.solveMs);
  });

  it('reuses its cell buffers across requests without carrying anything over', async () => {
    // Batches of 3 whose rows stop at two different iterations (rows 0 and 1 are the same
    // sample), so the reused CellBatch ends each solve with a packed row, and the next request
    // with that pattern meets the same mask.
    const per = model.bundle.parity!.cases[0].input!.data.length;
    const batchOf = (seed: number) => Float32Array.from({ length: 3 * per }, (_, i) => (i < 2 * per ? Math.sin((i % per) * 0.37 + seed) : 3 * Math.sin(i * 0.37 + 2 * seed)));
    const solver = { tol: 1e-6, maxIter: 60 };
    const fresh = await DeqModel.load(TINY_IMAGE);
    try {
      const seeds = [1, 2, 3];
      const alone = [];
      for (const seed of seeds) {
        const clean = await DeqModel.load(TINY_IMAGE);
        alone.push(await clean.infer({ input: batchOf(seed), batch: 3, solver }));
        await clean.release();
      }
      for (const r of alone) expect(new Set(r.solver.iterations).size).toBe(2);
      const sequential = [];
      for (const seed of seeds) sequential.push(await fresh.infer({ input: batchOf(seed), batch: 3, solver }));
      const concurrent = await Promise.all(seeds.map((seed) => fresh.infer({ input: batchOf(seed), batch: 3, solver })));
      for (const [i, want] of alone.entries()) {
        for (const got of [sequential[i], concurrent[i]]) {
          expect(Array.from(got.outputs.logits.data as Float32Array)).toEqual(Array.from(want.outputs.logits.data as Float32Array));
          expect(Array.from(got.solver.iterations)).toEqual(Array.from(want.solver.iterations));
          // Each request's own cell time, not the buffers' running total.
          expect(got.timing.cellMs).toBeLessThanOrEqual(got.timing.solveMs);
        }
      }
    } finally {
      await fresh.release();
    }
  });

  it('finishTogether: one head run over several requests gives each the rows finish gives it alone', async () => {
    const preps: Awaited<ReturnType<DeqModel['prepare']>>[] = [], zs: Float32Array[] = [];
    for (const b of [1, 3, 2]) {
      const prep = await model.prepare({ input: Float32Array.from({ length: 64 * b }, (_, i) => Math.cos(i * b)), batch: b });
      preps.push(prep);
      zs.push(Float32Array.from({ length: b * prep.n }, (_, i) => Math.sin(i / 7 + b)));
    }
    expect(preps.every((p) => model.canShareHead(p))).toBe(true);
    const together = await model.finishTogether(preps.map((prep, i) => ({ prep, z: zs[i] })));
    for (const [i, prep] of preps.entries()) {
      const alone = await model.finish(prep, zs[i]);
      expect(together[i].logits.dims).toEqual(alone.logits.dims);
      expectClose(together[i].logits.data as Float32Array, alone.logits.data as Float32Array, 1e-5);
    }
    // Copies, not views of one buffer: a reply posted to another thread carries its own rows only.
    expect((together[0].logits.data as Float32Array).buffer).not.toBe((together[1].logits.data as Float32Array).buffer);
    expect((together[0].logits.data as Float32Array).buffer.byteLength).toBe(together[0].logits.data.byteLength);
  });

  it('honours per-call solver overrides', async () => {
    const x = Float32Array.from(model.bundle.parity!.cases[0].input!.data);
    const capped = await model.infer({ input: x, batch: 1, solver: { tol: 1e-9, maxIter: 3 } });
    expect(capped.solver.iterations[0]).toBe(3);
    expect(capped.solver.converged[0]).toBe(0);
    for (const method of ['anderson', 'fixed-point'] as const) {
      const r = await model.infer({ input: x, batch: 1, solver: { method, tol: 1e-4, maxIter: 200 } });
      expect(r.solver.converged[0]).toBe(1);
      expect(r.options.method).toBe(method);
    }
  });

  it('rejects inputs of the wrong size or type, and bad solver options', async () => {
    const bad = await model.infer({ input: new Float32Array(5), batch: 1 }).catch((e: unknown) => e);
    expect((bad as DeqError).code).toBe('DEQ_ERR_INVALID_INPUT');
    const wrongType = await model.infer({ input: new BigInt64Array(64), batch: 1 }).catch((e: unknown) => e);
    expect((wrongType as DeqError).code).toBe('DEQ_ERR_INVALID_INPUT');
    const opt = await model.infer({ input: new Float32Array(64), batch: 1, solver: { tol: 0 } }).catch((e: unknown) => e);
    expect((opt as DeqError).code).toBe('DEQ_ERR_INVALID_SOLVER_OPTION');
  });

  it('fails loudly when a required provider cannot load', async () => {
    const err = await DeqModel.load(TINY_IMAGE, { providers: ['cuda'] }).catch((e: unknown) => e);
    expect((err as DeqError).code).toBe('DEQ_ERR_PROVIDER_UNAVAILABLE');
    expect((err as DeqError).message).toContain('cuda');
  });

  it('falls back along the provider list', async () => {
    const m = await DeqModel.load(TINY_IMAGE, { providers: ['cuda', 'cpu'] });
    expect(m.provider).toBe('cpu');
    await m.release();
  });
});

describe('DeqModel on the tiny language-model fixture', () => {
  let model: DeqModel;
  beforeAll(async () => { model = await DeqModel.load(TINY_LM); });
  afterAll(async () => { await model.release(); });

  it('passes parity', async () => {
    const report = await checkParity(model);
    expect(report.passed).toBe(true);
  });

  it('fetches only the outputs asked for', async () => {
    const c = model.bundle.parity!.cases[0];
    const tokens = BigInt64Array.from(c.input!.data, BigInt);
    const targets = BigInt64Array.from(c.extra_inputs!.targets.data, BigInt);
    const r = await model.infer({ input: tokens, batch: 1, length: tokens.length, headInputs: { targets }, outputs: ['target_logprobs'] });
    expect(Object.keys(r.outputs)).toEqual(['target_logprobs']);
    expect(r.outputs.target_logprobs.dims).toEqual([1, tokens.length]);
    for (const v of r.outputs.target_logprobs.data as Float32Array) expect(v).toBeLessThanOrEqual(0);
  });

  it('does not share head runs: its head reads the targets, at the window\'s length', async () => {
    const c = model.bundle.parity!.cases[0];
    const tokens = BigInt64Array.from(c.input!.data, BigInt);
    const targets = BigInt64Array.from(c.extra_inputs!.targets.data, BigInt);
    const prep = await model.prepare({ input: tokens, batch: 1, length: tokens.length, headInputs: { targets } });
    expect(model.canShareHead(prep)).toBe(false);
    const z = new Float32Array(prep.n);
    await expect(model.finishTogether([{ prep, z }, { prep, z }])).rejects.toThrow(/cannot share a head run/);
  });

  it('requires the targets head input', async () => {
    const err = await model.infer({ input: new BigInt64Array(4), batch: 1, length: 4 }).catch((e: unknown) => e);
    expect((err as DeqError).code).toBe('DEQ_ERR_INVALID_INPUT');
    expect((err as DeqError).message).toContain('targets');
  });
});

describe('DeqModel provider fallback', () => {
  it('says why each preferred provider could not load; none when the first one did', async () => {
    // The CUDA provider's library is an install-time opt-in that `npm ci` here never fetches.
    const m = await DeqModel.load(TINY_IMAGE, { providers: ['cuda', 'cpu'] });
    try {
      expect(m.provider).toBe('cpu');
      expect(m.providerFallbacks).toHaveLength(1);
      expect(m.providerFallbacks[0]).toMatch(/^cuda: \S/);
    } finally {
      await m.release();
    }
    const plain = await DeqModel.load(TINY_IMAGE, { providers: ['cpu'] });
    expect(plain.providerFallbacks).toEqual([]);
    await plain.release();
  });
});

describe('ModelOptions.solverKernel', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => { await Promise.all(cleanups.map((c) => c())); });

  /** A copy of the tiny image bundle whose manifest declares solver.precision "float32". */
  async function float32Copy(): Promise<string> {
    const { dir, cleanup } = await scratchCopy(TINY_IMAGE);
    cleanups.push(cleanup);
    const path = join(dir, 'manifest.json');
    const m = JSON.parse(await readFile(path, 'utf8'));
    m.solver.precision = 'float32';
    await writeFile(path, JSON.stringify(m));
    return dir;
  }

  async function zStar(dir: string, options?: ModelOptions): Promise<{ kernel: string; z: Float32Array }> {
    const model = await DeqModel.load(dir, {}, options);
    try {
      const input = Float32Array.from(model.bundle.parity!.cases[0].input!.data);
      const r = await model.infer({ input, batch: 1, returnState: true, solver: { tol: 1e-6, maxIter: 40 } });
      return { kernel: model.solverKernel, z: r.state!.data as Float32Array };
    } finally {
      await model.release();
    }
  }

  it('defaults to the kernel of the manifest\'s solver.precision, and an option overrides it', async () => {
    const f32 = await float32Copy();
    for (const [dir, options, kernel] of [
      [TINY_IMAGE, undefined, 'wasm'], [f32, undefined, 'wasm-f32'],
      [TINY_IMAGE, { solverKernel: 'wasm-f32' }, 'wasm-f32'], [TINY_IMAGE, { solverKernel: 'js' }, 'js'], [f32, { solverKernel: 'wasm' }, 'wasm'],
    ] as const) {
      const model = await DeqModel.load(dir, {}, options);
      expect(model.solverKernel, `${dir} ${JSON.stringify(options)}`).toBe(kernel);
      await model.release();
    }
  });

  it('solves with the kernel it was loaded with: the float32 option gives the float32 manifest\'s iterates bit for bit', async () => {
    const f64 = await zStar(TINY_IMAGE);
    const byOption = await zStar(TINY_IMAGE, { solverKernel: 'wasm-f32' });
    const byManifest = await zStar(await float32Copy());
    expect([f64.kernel, byOption.kernel, byManifest.kernel]).toEqual(['wasm', 'wasm-f32', 'wasm-f32']);
    // The two kernels' arithmetic differs, so z* tells which one ran.
    expect(Array.from(byManifest.z)).not.toEqual(Array.from(f64.z));
    expect(Array.from(byOption.z)).toEqual(Array.from(byManifest.z));
    // And back: float64 by option on the float32 bundle.
    expect(Array.from((await zStar(await float32Copy(), { solverKernel: 'wasm' })).z)).toEqual(Array.from(f64.z));
  });
});
