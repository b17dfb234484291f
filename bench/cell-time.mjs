// µs per run of cell-graph variants (bench/cell-variants.py writes them), at a batch size and
// graph optimization level each, runs alternating in rounds of 200; median and best round.
//   node bench/cell-time.mjs <batch> <variant>:<all|extended|basic> …
import * as ort from 'onnxruntime-node';

const B = Number(process.argv[2] ?? 1);
const sessions = [];
for (const v of process.argv.slice(3)) {
  const [file, level] = v.split(':');
  sessions.push({ v, s: await ort.InferenceSession.create(`/tmp/deq-cell-variants/${file}.onnx`, { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: level ?? 'all', executionMode: 'sequential' }) });
}
const dims = [B, 32, 14, 14], n = dims.reduce((a, b) => a * b);
const feeds = {
  z: new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.5), dims),
  u: new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => Math.cos(i) * 0.5), dims),
};
const t = sessions.map(() => []);
for (let r = 0; r < 40; r++) {
  for (let k = 0; k < sessions.length; k++) {
    const t0 = performance.now();
    for (let i = 0; i < 200; i++) await sessions[k].s.run(feeds);
    t[k].push(((performance.now() - t0) * 1000) / 200);
  }
}
const median = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];
sessions.forEach(({ v }, k) => console.log(v.padEnd(20), `median ${median(t[k]).toFixed(1)} µs per run, best round ${Math.min(...t[k]).toFixed(1)}`));
