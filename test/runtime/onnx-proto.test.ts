import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../../src/runtime/onnx-proto.js';

// The writer is checked by the only judge that matters: ONNX Runtime loads what it writes and computes with it.
describe('encodeModel', () => {
  it('writes a graph ONNX Runtime loads and runs: initializers, int and float attributes, negative int64s', async () => {
    const bytes = encodeModel({
      name: 't',
      inputs: [{ name: 'x', dtype: 'float32', shape: ['B', 2, 3] }],
      outputs: [{ name: 'y', dtype: 'float32', shape: ['B', 6] }, { name: 's', dtype: 'float32', shape: ['B', 1] }],
      nodes: [
        { op: 'Reshape', inputs: ['x', 'flat'], outputs: ['xf'] },
        { op: 'Mul', inputs: ['xf', 'w'], outputs: ['y'] },
        { op: 'ReduceSum', inputs: ['y', 'ax'], outputs: ['sum'], attrs: { keepdims: 1 } },
        { op: 'LeakyRelu', inputs: ['sum'], outputs: ['s'], attrs: { alpha: { f: 0.25 } } },
      ],
      initializers: [
        { name: 'flat', dtype: 'int64', dims: [2], values: [-1, 6] },
        { name: 'w', dtype: 'float32', dims: [6], values: [1, -2, 0.5, -3, 0, -1] },
        { name: 'ax', dtype: 'int64', dims: [1], values: [1] },
      ],
    });
    const session = await ort.InferenceSession.create(bytes);
    const x = Float32Array.from({ length: 12 }, (_, i) => i + 1);
    const out = await session.run({ x: new ort.Tensor('float32', x, [2, 2, 3]) });
    const w = [1, -2, 0.5, -3, 0, -1];
    const y = Array.from(x, (v, i) => v * w[i % 6]);
    expect(Array.from(out.y.data as Float32Array)).toEqual(y);
    expect(out.y.dims).toEqual([2, 6]);
    const leaky = (v: number) => (v < 0 ? 0.25 * v : v);
    const sums = [y.slice(0, 6).reduce((a, b) => a + b), y.slice(6).reduce((a, b) => a + b)];
    expect(sums[0]).toBeLessThan(0); // so the float attribute is seen
    expect(Array.from(out.s.data as Float32Array)).toEqual(sums.map(leaky));
    await session.release();
  });
});
