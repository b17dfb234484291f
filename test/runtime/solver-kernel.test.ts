// The shipped Fashion-MNIST bundles solved with the wasm kernels (float64 and float32
// arithmetic) and with the scalar js reference: same z*, same iteration counts (±1), same
// logits, for all three methods.
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFashionMnist, type ImageSet } from '../../src/eval/fashion-mnist.js';
import { normalizePixels } from '../../src/preprocess/normalize.js';
import { DeqModel } from '../../src/runtime/index.js';
import type { SolverKernel, SolverMethod } from '../../src/solver/index.js';
import { FASHION_MNIST_SLICE } from '../helpers/fixtures.js';
import { relDiffMax } from '../helpers/float.js';

const BATCH = 6;


for (const name of ['fashion-mnist-jr', 'fashion-mnist-plain']) {
  describe(`${name}: wasm solver kernels reproduce the js reference`, () => {
    // A model's kernel is fixed at load: the bundle once per kernel.
    const models = new Map<SolverKernel, DeqModel>();
    let set: ImageSet;
    beforeAll(async () => {
      const dir = resolve(import.meta.dirname, '..', '..', 'models', name);
      for (const k of ['js', 'wasm', 'wasm-f32'] as const) models.set(k, await DeqModel.load(dir, {}, { solverKernel: k }));
      set = await readFashionMnist('test', FASHION_MNIST_SLICE);
    });
    afterAll(async () => { await Promise.all([...models.values()].map((m) => m.release())); });

    for (const method of ['broyden', 'anderson', 'fixed-point'] as SolverMethod[]) {
      for (const kernel of ['wasm', 'wasm-f32'] as const) {
        it(`${method}, batch ${BATCH}, ${kernel}`, async () => {
          const per = set.rows * set.cols;
          const input = new Float32Array(BATCH * per);
          for (let i = 0; i < BATCH; i++) normalizePixels(set.images.subarray((40 + i) * per, (41 + i) * per), models.get('js')!.manifest.preprocess!, input, i * per);
          const runWith = (k: SolverKernel, x = input) => models.get(k)!.infer({ input: x, batch: BATCH, returnState: true, solver: { method, maxIter: 25 } });
          const js = await runWith('js');
          const wasm = await runWith(kernel);
          // 'wasm' does the reference's arithmetic: 1e-5. 'wasm-f32' rounds to float32, which an
          // ill-conditioned solve (fashion-mnist-plain, Broyden) amplifies: it must agree as well as
          // the reference agrees with itself when the pixels move by one float32 ulp (×10).
          let bound = 1e-5;
          if (kernel === 'wasm-f32') {
            const moved = await runWith('js', input.map((v) => v * (1 + 2 ** -23)));
            bound = Math.max(bound, 10 * relDiffMax(moved.state!.data as Float32Array, js.state!.data as Float32Array));
            expect(bound).toBeLessThanOrEqual(name === 'fashion-mnist-jr' ? 1e-5 : 5e-3);
          }
          expect(relDiffMax(wasm.state!.data as Float32Array, js.state!.data as Float32Array)).toBeLessThanOrEqual(bound);
          for (let i = 0; i < BATCH; i++) expect(Math.abs(wasm.solver.iterations[i] - js.solver.iterations[i])).toBeLessThanOrEqual(1);
          expect(Array.from(wasm.solver.converged)).toEqual(Array.from(js.solver.converged));
          const logits = Object.keys(js.outputs)[0];
          expect(relDiffMax(wasm.outputs[logits].data as Float32Array, js.outputs[logits].data as Float32Array)).toBeLessThanOrEqual(bound);
        });
      }
    }
  });
}
