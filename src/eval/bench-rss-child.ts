// One solve configuration in a fresh process, for `bench solve`'s peak-RSS rows
// (peak RSS is per process, so every max_iter gets its own). Prints one JSON line.
//   node dist/eval/bench-rss-child.js <bundle> <batch> <maxIter> <history> <kernel> <threads>
import { DeqModel } from '../runtime/index.js';
import type { SolverKernel } from '../solver/index.js';
import { batchRequest, benchImages } from './bench-inputs.js';

const [dir, batch, maxIter, history, kernel, threads] = process.argv.slice(2);
const model = await DeqModel.load(dir, { intraOpThreads: Number(threads) }, { solverKernel: kernel as SolverKernel });
const b = Number(batch);
const images = await benchImages(model, b);
const req = batchRequest(model, images, b, 0);
// tol far below float32 resolution: every sample runs to the cap.
req.solver = { maxIter: Number(maxIter), history: Number(history), tol: 1e-30 };
const start = performance.now();
const r = await model.infer(req);
const ms = performance.now() - start;
await model.release();
const nfe = r.solver.iterations.reduce((a, x) => a + x, 0) / b;
process.stdout.write(JSON.stringify({ peak_rss_mb: process.resourceUsage().maxRSS / 1024, nfe_mean: nfe, ms }) + '\n');
