// What one fashion-mnist-jr request costs in ONNX Runtime, per phase and batch size:
// inject (DeqModel.prepare), one cell evaluation (CellBatch.run), head (DeqModel.finish),
// in µs per run and per row, median of rounds. For docs/guides/serve-a-model.md ("Measured on 2 cores"):
// batching shares the cell runs, while inject and head run once per request.
// Quiet machine: npm run build && node bench/phases.mjs [bundle]
import { DeqModel } from '../dist/index.js';
import { batchRequest, benchImages } from '../dist/eval/bench-inputs.js';

const model = await DeqModel.load(process.argv[2] ?? 'models/fashion-mnist-jr');
const images = await benchImages(model, 64);
const median = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];
console.log('µs per run / per row'.padEnd(22), 'inject'.padStart(16), 'cell'.padStart(16), 'head'.padStart(16));
for (const batch of [1, 4, 16, 32]) {
  const req = batchRequest(model, images, batch, 0);
  const prep = await model.prepare(req);
  const cells = model.cellBatch(prep, batch);
  for (let i = 0; i < batch; i++) cells.setRow(i, prep, i);
  const z = new Float32Array(batch * prep.n).fill(0.1), fz = new Float32Array(batch * prep.n), all = new Uint8Array(batch).fill(1);
  const t = { inject: [], cell: [], head: [] };
  const reps = Math.max(20, Math.ceil(400 / batch));
  for (let r = -5; r < reps; r++) {
    const a = performance.now();
    await model.prepare(req);
    const b = performance.now();
    await cells.run(z, fz, all);
    const c = performance.now();
    await model.finish(prep, z);
    const d = performance.now();
    if (r >= 0) { t.inject.push(b - a); t.cell.push(c - b); t.head.push(d - c); }
  }
  const f = (xs) => `${(median(xs) * 1000).toFixed(0)} / ${((median(xs) * 1000) / batch).toFixed(0)}`;
  console.log(`batch ${batch}`.padEnd(22), f(t.inject).padStart(16), f(t.cell).padStart(16), f(t.head).padStart(16));
}
await model.release();
