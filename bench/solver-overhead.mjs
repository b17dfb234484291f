// Where a batch-1 solve's time outside ONNX Runtime goes, per evaluation of f: the solver step
// itself (SolveSession.advance, timed inside real solves, right after each cell run) against
// all of the solve's time outside cell runs (InferTiming: solveMs − cellMs). The difference is
// the solve's fixed cost spread over its evaluations: setup, copies, the await around each run,
// GC. docs/solver.md, "Where the solver's time goes". Quiet machine:
//   npm run build && node bench/solver-overhead.mjs [wasm|wasm-f32|js] [bundle]
import { DeqModel } from '../dist/index.js';
import { SolveSession } from '../dist/solver/index.js';
import { batchRequest, benchImages } from '../dist/eval/bench-inputs.js';

const kernel = process.argv[2] ?? 'wasm';
const model = await DeqModel.load(process.argv[3] ?? new URL('../models/fashion-mnist-jr', import.meta.url).pathname, {}, { solverKernel: kernel });
const images = await benchImages(model, 64);
const reqs = Array.from({ length: 64 }, (_, i) => batchRequest(model, images, 1, i));
let advanceMs = 0, evaluations = 0;
const advance = SolveSession.prototype.advance;
SolveSession.prototype.advance = function () {
  const t = performance.now();
  advance.call(this);
  advanceMs += performance.now() - t;
  evaluations++;
};
const us = (ms) => ((ms / evaluations) * 1000).toFixed(1);
for (let round = 0; round < 4; round++) {
  advanceMs = 0; evaluations = 0;
  let solve = 0, cell = 0;
  for (let i = 0; i < 1000; i++) {
    const { timing } = await model.infer(reqs[i % 64]);
    solve += timing.solveMs; cell += timing.cellMs;
  }
  console.log(`${kernel}, µs per evaluation: advance ${us(advanceMs)}, solve − cell ${us(solve - cell)}, cell ${us(cell)}; solver share ${(100 * (solve - cell) / solve).toFixed(1)}%; NFE ${(evaluations / 1000).toFixed(2)}`);
}
await model.release();
