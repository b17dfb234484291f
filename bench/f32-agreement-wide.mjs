// The float32 solver kernel against the float64 one over many inputs, per sample (docs/solver.md,
// "Kernel precision"): the 1,000 Fashion-MNIST test images of the fixture slice on both image
// bundles, and 1,280 64-token Brown test windows on brown-lm-jr. Manifest solver defaults.
//   npm run build && node bench/f32-agreement-wide.mjs [--data-dir DIR] [--only fashion-mnist-jr]
// --data-dir reads the Fashion-MNIST test split from DIR instead (all 10,000 images with
// /usr/share/datasets/fashion-mnist); --only runs one bundle. A bundle that declares
// solver.precision "float32" (docs/reference/bundle-format.md) should pass here first.
import { DeqModel } from '../dist/runtime/index.js';
import { readFashionMnist } from '../dist/eval/fashion-mnist.js';
import { benchWindows } from '../dist/eval/bench-inputs.js';
import { normalizePixels } from '../dist/preprocess/normalize.js';

const here = (p) => new URL(p, import.meta.url).pathname;
const rel = (a, b) => { let d = 0, s = 0; for (let i = 0; i < b.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); s = Math.max(s, Math.abs(b[i])); } return d / s; };
const tally = () => ({ z: 0, out: 0, iter: 0, samples: 0 });
function add(t, a, b, B, out) {
  const n = a.state.data.length / B, k = a.outputs[out].data.length / B;
  for (let i = 0; i < B; i++) {
    t.z = Math.max(t.z, rel(b.state.data.subarray(i * n, (i + 1) * n), a.state.data.subarray(i * n, (i + 1) * n)));
    t.out = Math.max(t.out, rel(b.outputs[out].data.subarray(i * k, (i + 1) * k), a.outputs[out].data.subarray(i * k, (i + 1) * k)));
    t.iter = Math.max(t.iter, Math.abs(a.solver.iterations[i] - b.solver.iterations[i]));
  }
  t.samples += B;
}
// A model's solver kernel is fixed at load: the bundle loaded once per kernel.
const loadBoth = async (dir) => ({ f64: await DeqModel.load(dir, {}, { solverKernel: 'wasm' }), f32: await DeqModel.load(dir, {}, { solverKernel: 'wasm-f32' }) });
const release = (m) => Promise.all([m.f64.release(), m.f32.release()]);
async function both(m, req) {
  return [await m.f64.infer(req), await m.f32.infer(req)];
}
const row = (name, what, t) => console.log(`| ${name} | ${t.samples} ${what} | ${t.z.toExponential(1)} | ${t.out.toExponential(1)} | ${t.iter} |`);

console.log('| bundle | inputs | worst z* (relative, per sample) | worst output | max Δ NFE |');
console.log('|---|---|---|---|---|');
const arg = (flag) => { const i = process.argv.indexOf(flag); return i > 0 ? process.argv[i + 1] : undefined; };
const only = arg('--only');
const set = await readFashionMnist('test', arg('--data-dir') ?? here('../test/fixtures/fashion-mnist'));
for (const name of ['fashion-mnist-jr', 'fashion-mnist-plain'].filter((n) => !only || n === only)) {
  const m = await loadBoth(here(`../models/${name}`));
  const t = tally(), B = 50, per = 784;
  for (let s0 = 0; s0 < set.count; s0 += B) {
    const input = new Float32Array(B * per);
    for (let i = 0; i < B; i++) normalizePixels(set.images.subarray((s0 + i) * per, (s0 + i + 1) * per), m.f64.manifest.preprocess, input, i * per);
    const [a, b] = await both(m, { input, batch: B, returnState: true });
    add(t, a, b, B, Object.keys(a.outputs)[0]);
  }
  row(name, 'test images', t);
  await release(m);
}
if (!only || only === 'brown-lm-jr') {
  const m = await loadBoth(here('../models/brown-lm-jr'));
  const { ids } = await benchWindows(m.f64);
  const t = tally(), B = 32, L = 64;
  for (let start = 0; start < 40 * 997; start += 997) {
    const input = new BigInt64Array(B * L), targets = new BigInt64Array(B * L);
    for (let b = 0; b < B; b++) for (let p = 0; p < L; p++) { const i = start + b * 131 + p; input[b * L + p] = BigInt(ids[i]); targets[b * L + p] = BigInt(ids[i + 1]); }
    const [a, b] = await both(m, { input, batch: B, length: L, headInputs: { targets }, outputs: ['target_logprobs'], returnState: true });
    add(t, a, b, B, 'target_logprobs');
  }
  row('brown-lm-jr', 'Brown test windows of 64 tokens', t);
  await release(m);
}
