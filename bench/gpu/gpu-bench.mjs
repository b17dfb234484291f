// The shipped models on a GPU execution provider against the CPU provider, side by side in one
// process (docs/gpu.md). Per model and batch size: whole-solve timings from DeqModel for each
// configuration (runs alternate), parity of the outputs and NFE against the all-cores CPU run, and
// (part iobinding) a split of one cell run into launch + compute and the host round trip, measured
// with ONNX Runtime's IO binding.
//   node bench/gpu/gpu-bench.mjs [--ep webgpu] [--part solve|device|iobinding,…] [--out FILE.json]
//                                [--batches 1,32,256] [--only NAME,…] [--data-dir DIR]
import { availableParallelism, cpus } from 'node:os';
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { DeqModel } from '../../dist/runtime/index.js';
import { batchRequest, benchImages } from '../../dist/eval/bench-inputs.js';

const { values } = parseArgs({ options: {
  ep: { type: 'string', default: 'webgpu' }, out: { type: 'string' }, batches: { type: 'string', default: '1,32,256' },
  only: { type: 'string' }, 'data-dir': { type: 'string', default: 'test/fixtures/fashion-mnist' },
  // solve: whole solves, TypeScript solver; device: whole solves with the solver's state on the device;
  // iobinding: the chained-cell split. run.sh runs each part in its own process, so that a native abort
  // in one takes no other part's figures with it.
  part: { type: 'string', default: 'solve,iobinding' },
} });
const PARTS = values.part.split(',');
const EP = values.ep;
const BATCHES = values.batches.split(',').map(Number);
const MODELS = (values.only ?? 'fashion-mnist-jr,fashion-mnist-plain,brown-lm-jr').split(',');
const CORES = availableParallelism();
// Whole solves measured per batch size (after 2 warm-up solves per provider); fewer at large batches.
const RUNS = { 1: 24, 32: 8, 256: 4 };
// f-evaluations chained per IO-binding timing.
const CHAIN = 20;

const median = (v) => { const s = [...v].sort((a, b) => a - b); return s.length ? s[s.length >> 1] : NaN; };
const maxAbsDiff = (a, b) => { let m = 0; for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Number(a[i]) - Number(b[i]))); return m; };
const log = (...a) => console.error(new Date().toISOString().slice(11, 19), ...a);

const report = { ep: EP, machine: `${cpus()[0]?.model ?? '?'}, ${CORES} cores`, cpu_threads: CORES, node: process.version, ort: ort.env.versions?.common ?? '?', models: [] };

for (const name of MODELS) {
  const dir = `models/${name}`;
  const entry = { model: name, rows: [], iobinding: [], errors: [] };
  report.models.push(entry);
  if (PARTS.includes('iobinding') && !PARTS.includes('solve') && !PARTS.includes('device')) {
    try { entry.iobinding = await ioBinding(dir, await imagesFor(dir)); } catch (err) { entry.errors.push(`iobinding: ${err.message}`); }
    continue;
  }
  // The configurations timed side by side; `cpu` (all cores) is the parity reference for the others.
  // solve: the TypeScript solver with the cell on the CPU (all cores, and one thread) and on the GPU;
  // device: the solver's state on the GPU too (solverPlacement 'device', runtime/device-solve.ts).
  const wanted = [['cpu', { providers: ['cpu'], intraOpThreads: CORES }, {}]];
  if (PARTS.includes('solve')) wanted.push(['cpu1', { providers: ['cpu'], intraOpThreads: 1 }, {}], ['gpu', { providers: [EP] }, {}]);
  if (PARTS.includes('device')) wanted.push(['gpu_device', { providers: [EP] }, { solverPlacement: 'device' }]);
  const configs = [];
  try {
    for (const [key, session, options] of wanted) {
      const t0 = performance.now();
      configs.push({ key, model: await DeqModel.load(dir, session, options) });
      entry[`${key}_load_ms`] = performance.now() - t0;
      entry[`${key}_provider`] = configs.at(-1).model.provider;
    }
  } catch (err) {
    entry.errors.push(`load: ${err.message}`);
    log(name, 'load failed', err.message);
    for (const c of configs) await c.model.release();
    continue;
  }
  const ref = configs[0].model;
  const images = await benchImages(ref, 1000, values['data-dir']);
  for (const batch of BATCHES) {
    const row = { batch, parity: {} };
    try {
      const runs = RUNS[batch] ?? 4;
      const acc = Object.fromEntries(configs.map((c) => [c.key, []]));
      // Per configuration against `cpu`: Δ over every sample, and over the samples both solved to tolerance
      // (a sample left unconverged at its cap is a different point on each side: float32 rounding differs).
      const par = Object.fromEntries(configs.slice(1).map((c) => [c.key, { max_abs_delta: 0, max_abs_delta_converged: 0, nfe_mismatch: 0, samples: 0, ref_converged: 0, converged: 0, both_converged: 0 }]));
      const first = {};
      for (let r = -2; r < runs; r++) {
        const req = batchRequest(ref, images, batch, Math.max(r, 0) * batch);
        const res = {};
        for (const c of configs) {
          const t0 = performance.now();
          res[c.key] = await c.model.infer(req);
          first[c.key] ??= performance.now() - t0; // the first solve at this shape: shader compilation included
        }
        if (r < 0) continue;
        for (const c of configs) acc[c.key].push({ ...res[c.key].timing, nfe: res[c.key].solver.iterations.reduce((s, x) => s + x, 0) / batch });
        const base = res.cpu;
        for (const c of configs.slice(1)) {
          const other = res[c.key], p = par[c.key];
          for (const out of Object.keys(base.outputs)) {
            const cd = base.outputs[out].data, gd = other.outputs[out].data, per = cd.length / batch;
            p.max_abs_delta = Math.max(p.max_abs_delta, maxAbsDiff(cd, gd));
            for (let i = 0; i < batch; i++) {
              if (base.solver.converged[i] && other.solver.converged[i]) p.max_abs_delta_converged = Math.max(p.max_abs_delta_converged, maxAbsDiff(cd.subarray(i * per, (i + 1) * per), gd.subarray(i * per, (i + 1) * per)));
            }
          }
          for (let i = 0; i < batch; i++) {
            if (base.solver.iterations[i] !== other.solver.iterations[i]) p.nfe_mismatch++;
            p.ref_converged += base.solver.converged[i]; p.converged += other.solver.converged[i];
            p.both_converged += base.solver.converged[i] & other.solver.converged[i];
          }
          p.samples += batch;
        }
      }
      for (const c of configs) {
        const a = acc[c.key];
        const pick = (f) => median(a.map(f));
        row[c.key] = {
          total_ms: pick((t) => t.totalMs), inject_ms: pick((t) => t.injectMs), solve_ms: pick((t) => t.solveMs),
          cell_ms: pick((t) => t.cellMs), solver_ms: pick((t) => t.solveMs - t.cellMs), head_ms: pick((t) => t.headMs),
          nfe_mean: a.reduce((s, t) => s + t.nfe, 0) / a.length, runs: a.length, first_solve_ms: first[c.key],
        };
      }
      row.parity = par;
      log(name, `b${batch}`, ...configs.map((c) => `${c.key} ${row[c.key].total_ms.toFixed(2)} ms (nfe ${row[c.key].nfe_mean.toFixed(2)})`),
        ...configs.slice(1).map((c) => `Δ${c.key} ${par[c.key].max_abs_delta.toExponential(2)} (converged ${par[c.key].max_abs_delta_converged.toExponential(2)}, ${par[c.key].both_converged}/${par[c.key].samples})`));
    } catch (err) {
      row.error = err.message;
      log(name, `b${batch}`, 'failed', err.message);
    }
    entry.rows.push(row);
  }
  for (const c of configs) await c.model.release();
  if (PARTS.includes('iobinding')) {
    try {
      entry.iobinding = await ioBinding(dir, images);
    } catch (err) {
      entry.errors.push(`iobinding: ${err.message}`);
      log(name, 'iobinding failed', err.message);
    }
  }
}

async function imagesFor(dir) {
  const m = await DeqModel.load(dir, { providers: ['cpu'] });
  try { return await benchImages(m, 1000, values['data-dir']); } finally { await m.release(); }
}

const json = JSON.stringify(report);
if (values.out) await writeFile(values.out, json + '\n');
process.stdout.write(json + '\n');

// Where a cell run's time goes, with ONNX Runtime's IO binding (preferredOutputLocation 'gpu-buffer'):
// the cell chained CHAIN times, z ← f(z),
//  (a) host chain: each state copied to the device and back, as the TypeScript solver does today;
//  (b) device chain: each output fed back as a GPU tensor; the last run's output comes back to the host.
//      (onnxruntime-node 1.30 aborts the process on Tensor.getData() and Tensor.dispose() of an ORT-made
//      gpu-buffer tensor, so the last run is made by a session whose output is on the host);
//  (c) readback: the head (one input) on a device-resident state, its small output on the host: what a
//      solver that kept its state on the device would still pay each iteration to read its residuals.
// (a) − (b) per evaluation is the copy-and-wait cost of the host round trip; (b) is launch + compute.
async function ioBinding(dir, images) {
  const manifest = JSON.parse(await readFile(`${dir}/manifest.json`, 'utf8'));
  const g = manifest.graphs;
  const opts = (outs) => ({ executionProviders: [EP], graphOptimizationLevel: 'all', ...(outs ? { preferredOutputLocation: outs } : {}) });
  const gpuOuts = (spec) => Object.fromEntries(spec.outputs.map((o) => [o.name, 'gpu-buffer']));
  const inject = await ort.InferenceSession.create(`${dir}/${g.inject.file}`, opts());
  const injectDev = await ort.InferenceSession.create(`${dir}/${g.inject.file}`, opts(gpuOuts(g.inject)));
  const cellHost = await ort.InferenceSession.create(`${dir}/${g.cell.file}`, opts());
  const cellDev = await ort.InferenceSession.create(`${dir}/${g.cell.file}`, opts(gpuOuts(g.cell)));
  const head = g.head.inputs.length === 1 ? await ort.InferenceSession.create(`${dir}/${g.head.file}`, opts()) : null;
  const zName = g.cell.inputs[0].name, outName = g.cell.outputs[0].name;
  const rows = [];
  for (const batch of BATCHES) {
    const row = { batch, chain: CHAIN };
    try {
      // Model input: the bench images, or the parity case repeated (language model).
      const cpuModel = await DeqModel.load(dir, { providers: ['cpu'] });
      const req = batchRequest(cpuModel, images, batch, 0);
      const length = req.length;
      await cpuModel.release();
      const inName = g.inject.inputs[0].name, inSpec = g.inject.inputs[0];
      const inDims = [batch, ...inSpec.shape.map((d) => (d === -1 ? length : d))];
      const feedsIn = { [inName]: new ort.Tensor(inSpec.dtype, req.input ?? req.inputs[inName], inDims) };
      const argsOf = (src) => Object.fromEntries(g.cell.inputs.slice(1).map((t) => [t.name, src[t.name]]));
      const hostArgs = argsOf(await inject.run(feedsIn));
      const devArgs = argsOf(await injectDev.run(feedsIn));
      const stateDims = [batch, ...manifest.state.shape.map((d) => (d === -1 ? length : d))];
      const n = stateDims.reduce((a, b) => a * b, 1);
      const zeros = () => new ort.Tensor('float32', new Float32Array(n), stateDims);
      const chainHost = async () => {
        let z = zeros();
        for (let i = 0; i < CHAIN; i++) z = (await cellHost.run({ [zName]: z, ...hostArgs }))[outName];
        return z.data;
      };
      const chainDev = async () => {
        let z = zeros();
        // No dispose() of earlier outputs (see above): each is freed when collected.
        for (let i = 0; i < CHAIN - 1; i++) z = (await cellDev.run({ [zName]: z, ...devArgs }))[outName];
        return (await cellHost.run({ [zName]: z, ...devArgs }))[outName].data;
      };
      let zDev = null;
      const readback = async () => (await head.run({ [g.head.inputs[0].name]: zDev }))[g.head.outputs[0].name].data;
      // Warm-up (shader compilation for these shapes), then the three alternate.
      const a = await chainHost();
      const b = await chainDev();
      row.max_abs_delta_host_vs_device = maxAbsDiff(a, b);
      if (head) { zDev = (await cellDev.run({ [zName]: zeros(), ...devArgs }))[outName]; await readback(); }
      const th = [], td = [], tr = [];
      for (let r = 0; r < 5; r++) {
        let t0 = performance.now(); await chainHost(); th.push(performance.now() - t0);
        t0 = performance.now(); await chainDev(); td.push(performance.now() - t0);
        if (head) { t0 = performance.now(); for (let i = 0; i < CHAIN; i++) await readback(); tr.push(performance.now() - t0); }
      }
      row.host_chain_ms_per_eval = median(th) / CHAIN;
      row.device_chain_ms_per_eval = median(td) / CHAIN;
      row.round_trip_ms_per_eval = row.host_chain_ms_per_eval - row.device_chain_ms_per_eval;
      row.round_trip_share = row.round_trip_ms_per_eval / row.host_chain_ms_per_eval;
      if (head) row.head_readback_ms = median(tr) / CHAIN;
      row.state_bytes = n * 4;
      log(dir, `iobinding b${batch}`, `host ${row.host_chain_ms_per_eval.toFixed(3)} ms/eval`, `device ${row.device_chain_ms_per_eval.toFixed(3)} ms/eval`,
        head ? `head readback ${row.head_readback_ms.toFixed(3)} ms` : '', `Δ ${row.max_abs_delta_host_vs_device.toExponential(2)}`);
    } catch (err) {
      row.error = err.message.split('\n')[0];
      log(dir, `iobinding b${batch} failed`, row.error);
    }
    rows.push(row);
  }
  for (const sess of [inject, injectDev, cellHost, cellDev, head]) await sess?.release();
  return rows;
}
