// Independent check of an exported bundle with onnxruntime-node (no deq-serve code):
//   node models/recipes/verify_bundle.mjs <bundle-dir> [...]
// For every parity case: inject -> plain fixed-point iteration of cell (rel tol 1e-6,
// up to 500 steps; needs a contractive cell) -> head, compared with parity.json.
// Also runs the cell with the case duplicated to batch 2 (dynamic batch axis).
// Written for the recipes' layout (inject x -> u, cell(z, u), head); bundles with several
// inputs or without inject/head are checked by `deq-serve inspect` only.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.resolve('package.json'));
const ort = require('onnxruntime-node');

function tensor(dtype, data, dims) {
  if (dtype === 'int64') return new ort.Tensor('int64', BigInt64Array.from(data.map((v) => BigInt(v))), dims);
  return new ort.Tensor('float32', Float32Array.from(data), dims);
}
const norm = (a) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));

let failed = false;
for (const dir of process.argv.slice(2)) {
  const man = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  const par = JSON.parse(readFileSync(path.join(dir, 'parity.json'), 'utf8'));
  const s = {};
  for (const g of ['inject', 'cell', 'head']) s[g] = await ort.InferenceSession.create(path.join(dir, man.graphs[g].file));
  const inName = man.graphs.inject.inputs[0].name;
  let worst = 0, worstZ = 0, steps = [];
  for (const c of par.cases) {
    // cases name their inputs (`inputs`); bundles exported before that hold one `input`
    const inp = c.inputs ? c.inputs[inName] : c.input;
    const x = tensor(inp.dtype, inp.data, [1, ...inp.shape]);
    const u = (await s.inject.run({ [inName]: x })).u;
    let z = new ort.Tensor('float32', new Float32Array(u.data.length), u.dims);
    let k = 0;
    for (; k < 500; k++) {
      const zn = (await s.cell.run({ z, u })).z_next;
      const d = zn.data.map((v, i) => v - z.data[i]);
      z = zn;
      if (norm(d) / (norm(zn.data) + 1e-9) < 1e-6) break;
    }
    steps.push(k + 1);
    if (c.z_star) worstZ = Math.max(worstZ, ...Array.from(z.data, (v, i) => Math.abs(v - c.z_star[i])));
    const feeds = { z };
    for (const [k2, e] of Object.entries(c.extra_inputs || {})) feeds[k2] = tensor(e.dtype, e.data, [1, ...e.shape]);
    const out = await s.head.run(feeds);
    for (const [name, ref] of Object.entries(c.outputs)) {
      const got = Array.from(out[name].data, Number);
      if (got.length !== ref.length) { console.log(`${dir}: ${name} length ${got.length} != ${ref.length}`); failed = true; continue; }
      if (name.endsWith('_ids')) continue; // ties may reorder; values checked via topk_logprobs
      worst = Math.max(worst, ...got.map((v, i) => Math.abs(v - ref[i])));
    }
    // batch-2 cell run
    const z2 = new ort.Tensor('float32', Float32Array.from([...z.data, ...z.data]), [2, ...z.dims.slice(1)]);
    const u2 = new ort.Tensor('float32', Float32Array.from([...u.data, ...u.data]), [2, ...u.dims.slice(1)]);
    const zn2 = (await s.cell.run({ z: z2, u: u2 })).z_next;
    if (zn2.dims[0] !== 2) { console.log(`${dir}: batch-2 cell gave dims ${zn2.dims}`); failed = true; }
  }
  const ok = worst <= man.parity.atol;
  if (!ok) failed = true;
  console.log(`${dir}: ${par.cases.length} cases, fixed-point steps ${steps.join(',')}, max |out diff| ${worst.toExponential(2)}, max |z* diff| ${worstZ.toExponential(2)} -> ${ok ? 'OK' : 'FAIL'}`);
}
process.exit(failed ? 1 : 0);
