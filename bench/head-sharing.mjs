// How many rows each head run carries under the Scheduler (requests stopping at the same
// boundary share one run: DeqModel.finishTogether), with 16 clients in-process on
// fashion-mnist-jr, in continuous and static mode. Counts, not timings: the per-row cost of
// the head at each batch size is bench/phases.mjs. npm run build && node bench/head-sharing.mjs
import { DeqModel } from '../dist/index.js';
import { Scheduler } from '../dist/runtime/index.js';
import { batchRequest, benchImages } from '../dist/eval/bench-inputs.js';

const model = await DeqModel.load(process.argv[2] ?? 'models/fashion-mnist-jr');
const images = await benchImages(model, 256);
const finish = model.finish.bind(model);
let runs = 0, rows = 0;
model.finish = (prep, z, outputs) => { runs++; rows += prep.batch; return finish(prep, z, outputs); };
for (const mode of ['continuous', 'static']) {
  const sched = new Scheduler(model, { mode });
  runs = 0;
  rows = 0;
  let next = 0;
  const N = 2000;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < N) await sched.submit(batchRequest(model, images, 1, next++ % 256)).result;
  }));
  console.log(`${mode.padEnd(10)} ${N} requests: ${runs} head runs, ${(rows / runs).toFixed(2)} rows per run`);
}
await model.release();
