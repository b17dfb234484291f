// Tensor bundles (issue #13): optional inject/head, several raw inputs, state slices as
// outputs, and parity that passes a case only when both solves converged and agree.
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadBundle } from '../../src/runtime/bundle.js';
import { DeqModel } from '../../src/runtime/deq-model.js';
import { modelInputs, modelOutputs } from '../../src/runtime/manifest.js';
import { checkParity } from '../../src/runtime/parity.js';
import { DeqError } from '../../src/errors.js';
import { expectClose } from '../helpers/float.js';
import { scratchCopy, TINY_IMAGE, TINY_LM, TINY_TENSOR } from '../helpers/fixtures.js';

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.map((c) => c()));
  cleanups = [];
});

async function copy(bundle: string): Promise<string> {
  const { dir, cleanup } = await scratchCopy(bundle);
  cleanups.push(cleanup);
  return dir;
}

async function editJson(dir: string, file: string, edit: (j: any) => void): Promise<void> {
  const path = join(dir, file);
  const j = JSON.parse(await readFile(path, 'utf8'));
  edit(j);
  await writeFile(path, JSON.stringify(j));
}

/** Edits parity.json and re-signs it in the manifest, as a (careless) exporter would have written it. */
async function editParity(dir: string, edit: (p: any) => void): Promise<void> {
  await editJson(dir, 'parity.json', edit);
  const sha = createHash('sha256').update(await readFile(join(dir, 'parity.json'))).digest('hex');
  await editJson(dir, 'manifest.json', (m) => { m.parity.sha256 = sha; });
}

async function parityOf(dir: string) {
  const model = await DeqModel.load(dir);
  try {
    return await checkParity(model);
  } finally {
    await model.release();
  }
}

describe('tensor bundles', () => {
  it('declare their inputs and outputs from the cell and the state slices', async () => {
    const b = await loadBundle(TINY_TENSOR);
    expect(b.graphs.inject).toBeUndefined();
    expect(b.graphs.head).toBeUndefined();
    expect(modelInputs(b.manifest).map((t) => [t.name, t.dtype, t.shape])).toEqual([['x', 'float32', [3]], ['ids', 'int64', [2]]]);
    expect(modelOutputs(b.manifest).map((t) => [t.name, t.shape])).toEqual([['a', [2]], ['b', [2, 2]]]);
  });

  it('infer takes named inputs and returns the slices of z*, row by row', async () => {
    const model = await DeqModel.load(TINY_TENSOR);
    try {
      const cases = model.bundle.parity!.cases;
      const x = Float32Array.from(cases.flatMap((c) => c.inputs!.x.data));
      const ids = BigInt64Array.from(cases.flatMap((c) => c.inputs!.ids.data), BigInt);
      const r = await model.infer({ inputs: { x, ids }, batch: cases.length, solver: { tol: 1e-6, maxIter: 100 }, returnState: true });
      expect(r.outputs.a.dims).toEqual([cases.length, 2]);
      expect(r.outputs.b.dims).toEqual([cases.length, 2, 2]);
      const z = r.state!.data as Float32Array;
      for (const [i, c] of cases.entries()) {
        expectClose(r.outputs.a.data.slice(2 * i, 2 * i + 2) as Float32Array, c.outputs.a, 1e-4);
        expectClose(r.outputs.b.data.slice(4 * i, 4 * i + 4) as Float32Array, c.outputs.b, 1e-4);
        expect(Array.from(r.outputs.b.data.slice(4 * i, 4 * i + 4) as Float32Array)).toEqual(Array.from(z.slice(6 * i + 2, 6 * i + 6)));
      }
      await expect(model.infer({ inputs: { x }, batch: cases.length })).rejects.toThrow(/input "ids" is required/);
      await expect(model.infer({ inputs: { x, ids: Float32Array.from([0, 1, 2, 3, 4, 5]) }, batch: cases.length })).rejects.toThrow(/must be int64/);
    } finally {
      await model.release();
    }
  });

  it('refuses state slices that do not fit the state, and cell inputs inject does not produce', async () => {
    const dir = await copy(TINY_TENSOR);
    await editJson(dir, 'manifest.json', (m) => { m.state_outputs[1].offset = 3; });
    await expect(loadBundle(dir)).rejects.toThrow(/state_outputs\[1\] "b".*runs past/);
    const img = await copy(TINY_IMAGE);
    await editJson(img, 'manifest.json', (m) => { m.graphs.cell.inputs[1].name = 'injection'; });
    const err = await loadBundle(img).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(DeqError);
    expect((err as DeqError).message).toMatch(/graphs\.cell\.inputs\[1\] "injection" is not an output of graphs\.inject/);
  });

  it('an image bundle still needs inject and head', async () => {
    const dir = await copy(TINY_IMAGE);
    await editJson(dir, 'manifest.json', (m) => { delete m.graphs.inject; });
    await expect(loadBundle(dir)).rejects.toThrow(/inject/);
  });
});

describe('honest parity', () => {
  it('passes the fixture, with every case converged on both sides', async () => {
    const r = await parityOf(TINY_TENSOR);
    expect(r.passed).toBe(true);
    for (const c of r.cases) expect([c.converged, c.referenceConverged, c.failure]).toEqual([true, true, undefined]);
  });

  it('fails a case whose reference solve did not converge, even though the outputs agree', async () => {
    const dir = await copy(TINY_TENSOR);
    await editParity(dir, (p) => { p.cases[1].reference.converged = false; });
    const r = await parityOf(dir);
    expect(r.passed).toBe(false);
    expect(r.maxDeviation).toBeLessThan(r.atol);
    expect(r.cases[1].failure).toBe('reference solve did not converge');
    expect(r.cases[0].failure).toBeUndefined();
  });

  it('fails when the TypeScript solve stops unconverged, even where both stopped at the same iterate', async () => {
    const dir = await copy(TINY_TENSOR);
    await editParity(dir, (p) => { p.solver.max_iter = 2; });
    const r = await parityOf(dir);
    expect(r.passed).toBe(false);
    for (const c of r.cases) expect(c.failure).toMatch(/TypeScript solve did not converge/);
  });

  it('reads the exporter\'s format for a language model: inputs by name plus the head\'s extra_inputs', async () => {
    const dir = await copy(TINY_LM);
    await editParity(dir, (p) => {
      for (const c of p.cases) {
        c.inputs = { tokens: c.input };
        delete c.input;
        c.reference = { method: p.solver.method, converged: c.solver_rel_residual < p.solver.tol };
        delete c.solver_rel_residual;
      }
    });
    const r = await parityOf(dir);
    expect(r.cases.map((c) => c.failure)).toEqual(r.cases.map(() => undefined));
    expect(r.passed).toBe(true);
  });

  it('fails a bundle whose own default solver does not converge on its parity inputs', async () => {
    const dir = await copy(TINY_TENSOR);
    await editJson(dir, 'manifest.json', (m) => { m.solver.max_iter = 2; });
    const r = await parityOf(dir);
    expect(r.passed).toBe(false);
    for (const c of r.cases) {
      expect([c.converged, c.referenceConverged, c.defaultConverged]).toEqual([true, true, false]);
      expect(c.failure).toMatch(/default solver \(anderson, tol 0.00001, max_iter 2\) did not converge/);
    }
  });

  it('older bundles (no exporter check recorded) only report a default solver that does not converge', async () => {
    const dir = await copy(TINY_IMAGE);
    await editJson(dir, 'manifest.json', (m) => { m.solver.max_iter = 2; });
    const r = await parityOf(dir);
    expect(r.cases.map((c) => c.defaultConverged)).toEqual(r.cases.map(() => false));
    expect(r.passed).toBe(true);
  });

  it('older bundles: reference convergence comes from solver_rel_residual', async () => {
    expect((await parityOf(TINY_IMAGE)).passed).toBe(true);
    const dir = await copy(TINY_IMAGE);
    await editParity(dir, (p) => { p.cases[0].solver_rel_residual = 2e-5; });
    const r = await parityOf(dir);
    expect(r.passed).toBe(false);
    expect(r.cases[0].referenceConverged).toBe(false);
  });
});
