// How far the float32 solver kernel moves answers, against how far the float64 reference
// moves its own answer when the pixels move by one float32 ulp (docs/solver.md, "Kernel
// precision"). 32 test images of the fixture slice, manifest solver defaults, max_iter 30.
//   npm run build && node bench/f32-agreement.mjs
import { DeqModel } from '../dist/runtime/index.js';
import { readFashionMnist } from '../dist/eval/fashion-mnist.js';
import { normalizePixels } from '../dist/preprocess/normalize.js';

const rel = (a, b) => { let d = 0, m = 0; for (let i = 0; i < b.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); } return d / m; };
const set = await readFashionMnist('test', new URL('../test/fixtures/fashion-mnist', import.meta.url).pathname);
console.log('| bundle | method | NFE | f32 vs reference: z* | logits | max Δ NFE | argmax changes | reference vs itself, pixels ×(1+2⁻²³): z* |');
console.log('|---|---|---|---|---|---|---|---|');
for (const name of ['fashion-mnist-jr', 'fashion-mnist-plain']) {
  // A model's solver kernel is fixed at load: one per kernel.
  const dir = new URL(`../models/${name}`, import.meta.url).pathname;
  const models = { js: await DeqModel.load(dir, {}, { solverKernel: 'js' }), 'wasm-f32': await DeqModel.load(dir, {}, { solverKernel: 'wasm-f32' }) };
  const model = models.js;
  const B = 32, per = 784, input = new Float32Array(B * per);
  for (let i = 0; i < B; i++) normalizePixels(set.images.subarray(i * per, (i + 1) * per), model.manifest.preprocess, input, i * per);
  const moved = input.map((v) => v * (1 + 2 ** -23));
  for (const method of ['broyden', 'anderson', 'fixed-point']) {
    const run = (kernel, x = input) => models[kernel].infer({ input: x, batch: B, returnState: true, solver: { method, maxIter: 30 } });
    const js = await run('js'), f32 = await run('wasm-f32'), self = await run('js', moved);
    const out = Object.keys(js.outputs)[0], L = js.outputs[out].data, Lf = f32.outputs[out].data, C = L.length / B;
    let dIter = 0, argmax = 0, nfe = 0;
    for (let i = 0; i < B; i++) {
      dIter = Math.max(dIter, Math.abs(js.solver.iterations[i] - f32.solver.iterations[i]));
      nfe += js.solver.iterations[i];
      let a = 0, b = 0;
      for (let c = 0; c < C; c++) { if (L[i * C + c] > L[i * C + a]) a = c; if (Lf[i * C + c] > Lf[i * C + b]) b = c; }
      argmax += a !== b;
    }
    console.log(`| ${name} | ${method} | ${(nfe / B).toFixed(2)} | ${rel(f32.state.data, js.state.data).toExponential(1)} | ${rel(Lf, L).toExponential(1)} | ${dIter} | ${argmax} | ${rel(self.state.data, js.state.data).toExponential(1)} |`);
  }
  await Promise.all(Object.values(models).map((m) => m.release()));
}
