import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nestedOutput, nestedShape, TensorPipeline } from '../../src/pipelines/tensor.js';
import { expectClose } from '../helpers/float.js';
import { TINY_TENSOR } from '../helpers/fixtures.js';

describe('tensor pipeline', () => {
  let p: TensorPipeline;
  let cases: { inputs: Record<string, { data: number[] }>; outputs: Record<string, number[]> }[];
  beforeAll(async () => {
    p = await TensorPipeline.load(TINY_TENSOR);
    cases = JSON.parse(await readFile(join(TINY_TENSOR, 'parity.json'), 'utf8')).cases;
  });
  afterAll(async () => { await p.release(); });

  it('predicts one sample (no batch dim) and a batch, matching the exporter’s reference', async () => {
    const one = await p.predict({ x: cases[0].inputs.x.data, ids: cases[0].inputs.ids.data });
    expect(one.outputs.b.shape).toEqual([2, 2]);
    expectClose((one.outputs.a.data as number[]), cases[0].outputs.a, 1e-4);
    const all = await p.predict({ x: cases.map((c) => c.inputs.x.data), ids: cases.map((c) => c.inputs.ids.data) }, { outputs: ['b'], solver: { tol: 1e-6 } });
    expect(Object.keys(all.outputs)).toEqual(['b']);
    expect(all.outputs.b.shape).toEqual([cases.length, 2, 2]);
    expectClose((all.outputs.b.data as number[][][]).flat(2), cases.flatMap((c) => c.outputs.b), 1e-4);
    expect(Array.from(all.solver.converged)).toEqual(cases.map(() => 1));
  });

  it('refuses ragged, too deep and unknown inputs by name', async () => {
    expect(() => nestedShape('x', [[1, 2], [3]], 2)).toThrow(/x is ragged/);
    expect(() => nestedShape('x', [[[1]]], 2)).toThrow(/deeper/);
    await expect(p.predict({ y: [1] })).rejects.toThrow(/unknown input "y"; tiny-tensor takes x, ids/);
    await expect(p.predict({ x: [1, 2, 3], ids: [0, 99.5] })).rejects.toThrow(/ids\[1\] must be an integer/);
  });

  it('nests outputs row-major, with or without the batch dim', () => {
    const t = { type: 'float32' as const, data: Float32Array.from([0, 1, 2, 3, 4, 5]), dims: [1, 2, 3] };
    expect(nestedOutput(t, true)).toEqual({ shape: [2, 3], data: [[0, 1, 2], [3, 4, 5]] });
    expect(nestedOutput(t, false)).toEqual({ shape: [1, 2, 3], data: [[[0, 1, 2], [3, 4, 5]]] });
  });
});
