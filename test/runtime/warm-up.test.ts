// DeqModel.warmUp: the warm solves and cell runs a worker makes before serving, at the shapes
// a batched solve takes, and answers afterwards bit for bit a cold model's.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DeqModel, type InferRequest, type InferResult } from '../../src/runtime/deq-model.js';
import { modelInputs } from '../../src/runtime/manifest.js';
import { caseInputs, toTyped } from '../../src/runtime/parity.js';
import { TINY_IMAGE, TINY_LM, TINY_TENSOR } from '../helpers/fixtures.js';

const open: DeqModel[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(open.splice(0).map((m) => m.release()));
});

async function load(dir: string): Promise<DeqModel> {
  const m = await DeqModel.load(dir);
  open.push(m);
  return m;
}

/** The bundle's first parity case, its sample repeated `batch` times. */
function parityRequest(model: DeqModel, batch: number): InferRequest {
  const given = caseInputs(model.manifest, model.bundle.parity!.cases[0]);
  let length: number | undefined;
  const inputs: Record<string, Float32Array | BigInt64Array> = {};
  for (const spec of modelInputs(model.manifest)) {
    const one = toTyped(given[spec.name]);
    if (spec.shape.includes(-1)) length = one.length / spec.shape.reduce((a, d) => (d === -1 ? a : a * d), 1);
    const all = one instanceof BigInt64Array ? new BigInt64Array(one.length * batch) : new Float32Array(one.length * batch);
    for (let b = 0; b < batch; b++) all.set(one as never, b * one.length);
    inputs[spec.name] = all;
  }
  return { inputs, batch, length, returnState: true };
}

const bytes = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);

function expectSameBits(got: InferResult, want: InferResult): void {
  expect(Object.keys(got.outputs).sort()).toEqual(Object.keys(want.outputs).sort());
  for (const [name, t] of Object.entries(want.outputs)) {
    expect(got.outputs[name].dims, name).toEqual(t.dims);
    expect(bytes(got.outputs[name].data).equals(bytes(t.data)), `${name} bit for bit`).toBe(true);
  }
  expect(bytes(got.state!.data).equals(bytes(want.state!.data)), 'z* bit for bit').toBe(true);
  expect(Array.from(got.solver.iterations)).toEqual(Array.from(want.solver.iterations));
}

describe('DeqModel.warmUp', () => {
  for (const [name, dir] of [['tiny-image', TINY_IMAGE], ['tiny-lm', TINY_LM], ['tiny-tensor', TINY_TENSOR]] as const) {
    it(`${name}: after a batched warm-up, answers are a cold model's bit for bit`, async () => {
      const cold = await load(dir), warm = await load(dir);
      const report = await warm.warmUp({ maxRows: 4 });
      expect(report.solveMs).toBeGreaterThan(0);
      expect(report.totalMs).toBeGreaterThanOrEqual(report.solveMs);
      // Batches 3 and 4 reuse the buffers the warm-up's solves at those row counts left behind
      // (the parity cases are at the shapes warm-up solves at: tiny-lm's at its full context).
      for (const batch of [1, 3, 4]) expectSameBits(await warm.infer(parityRequest(warm, batch)), await cold.infer(parityRequest(cold, batch)));
    });
  }

  it('solves once at batch 1 without maxRows, and at every row count up to maxRows with it', async () => {
    const model = await load(TINY_IMAGE);
    const infer = vi.spyOn(model, 'infer');
    await model.warmUp();
    expect(infer.mock.calls.map(([r]) => r.batch)).toEqual([1]);
    infer.mockClear();
    await model.warmUp({ maxRows: 4 });
    expect(infer.mock.calls.map(([r]) => r.batch)).toEqual([1, 2, 3, 4]);
    // The batched shapes need one cell run each: one iteration; the first solve runs the manifest's settings.
    expect(infer.mock.calls.map(([r]) => r.solver?.maxIter)).toEqual([model.manifest.solver.max_iter, 1, 1, 1]);
  });

  it('tiny-lm: solves at the full context in slices within maxRowsPerRun, and runs the padded cell at every row count', async () => {
    const model = await load(TINY_LM);
    const context = model.manifest.tokenizer!.context;
    const infer = vi.spyOn(model, 'infer'), cellBatch = vi.spyOn(model, 'cellBatch');
    await model.warmUp({ maxRows: 4, maxRowsPerRun: 2 * context });
    // batch 1 at length 8, then 2, 3, 4 rows at the full context, two rows per solve.
    expect(infer.mock.calls.map(([r]) => [r.batch, r.length])).toEqual([[1, 8], [2, context], [2, context], [1, context], [2, context], [2, context]]);
    const padded = cellBatch.mock.calls.filter(([, , padding]) => padding !== undefined);
    expect(padded.map(([, capacity, padding]) => [capacity, padding!.length])).toEqual([[1, context], [2, context], [3, context], [4, context]]);
  });
});
