// Renders the tables of docs/results/gpu-h200-webgpu.md from a run's results.jsonl (bench/gpu/run.sh).
//   node bench/gpu/report.mjs docs/results/gpu/h200-webgpu.jsonl > docs/results/gpu-h200-webgpu.md
import { readFileSync } from 'node:fs';

const file = process.argv[2];
if (!file) { console.error('usage: node bench/gpu/report.mjs RESULTS.jsonl'); process.exit(2); }
const parts = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const byModel = new Map();
for (const p of parts) {
  for (const m of p.models) {
    const e = byModel.get(m.model) ?? { solve: null, device: null, iobinding: null, failures: [] };
    if (p.ep !== 'webgpu') { e.failures.push(`${p.ep}: ${m.errors.join('; ')}`); byModel.set(m.model, e); continue; }
    if (m.rows.length && m.rows[0].cpu1) e.solve = m;
    else if (m.rows.length && m.rows[0].gpu_device) e.device = m;
    if (m.iobinding.length) e.iobinding = m;
    byModel.set(m.model, e);
  }
}
const f = (x, d = 2) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(d));
const e = (x) => (x === 0 ? '0' : x.toExponential(1));
const machine = parts[0].machine;
const out = [];
out.push('# deq-serve on an NVIDIA H200: WebGPU against the host CPU', '',
  `Host: one NVIDIA H200 (driver 580.159.04, CUDA 13.0 runtime), ${machine}; Node ${parts[0].node}, onnxruntime-node 1.30 with its bundled WebGPU provider (Dawn on Vulkan). Probe: [gpu/h200-probe.txt](gpu/h200-probe.txt); raw results: [gpu/h200-webgpu.jsonl](gpu/h200-webgpu.jsonl); log: [gpu/h200-webgpu.log](gpu/h200-webgpu.log).`, '',
  'Reproduce (on the GPU host, with the kit from `bash bench/gpu/kit.sh` and `dist/`): `bash .gpu-kit/run.sh bash bench/gpu/run.sh OUT`, then `node bench/gpu/report.mjs OUT/results.jsonl`. docs/gpu.md explains the columns and what they mean.', '',
  'Inputs: the first Fashion-MNIST test images of `test/fixtures/fashion-mnist` (each batch a new slice), and brown-lm-jr\'s parity window (16 tokens) repeated. Each model\'s own solver defaults (Broyden, history 8). Times are medians per solve (the whole batch), in ms; runs of the configurations alternate in one process.', '');

out.push('## Whole solves: CPU against WebGPU, the TypeScript solver on the host', '',
  '`cpu16`: CPU provider, 16 threads; `cpu1`: one thread; `webgpu`: cell, inject and head on the GPU, solver on the host. Split of the WebGPU solve: inject / cell runs / solver (host algebra) / head. Speed-up: the faster CPU column ÷ WebGPU. Parity: max |Δ| of the outputs (logits, or target log-probabilities) against cpu16, over every sample and over the samples both sides solved to tolerance; NFE: mean evaluations per sample, cpu16 / webgpu.', '',
  '| model | batch | cpu16 | cpu1 | webgpu | webgpu: inject / cell / solver / head | speed-up | max \\|Δ\\| all / converged (both converged) | NFE |',
  '|---|---|---|---|---|---|---|---|---|');
for (const [model, m] of byModel) {
  for (const r of m.solve?.rows ?? []) {
    const p = r.parity.gpu;
    const best = Math.min(r.cpu.total_ms, r.cpu1.total_ms);
    out.push(`| ${model} | ${r.batch} | ${f(r.cpu.total_ms)} | ${f(r.cpu1.total_ms)} | ${f(r.gpu.total_ms)} | ${f(r.gpu.inject_ms)} / ${f(r.gpu.cell_ms)} / ${f(r.gpu.solver_ms)} / ${f(r.gpu.head_ms)} | ${f(best / r.gpu.total_ms)}× | ${e(p.max_abs_delta)} / ${e(p.max_abs_delta_converged)} (${p.both_converged}/${p.samples}) | ${f(r.cpu.nfe_mean)} / ${f(r.gpu.nfe_mean)} |`);
  }
}
out.push('', 'CPU side split, for comparison (cpu16: inject / cell / solver / head):', '', '| model | batch | cpu16 split | cpu1 split |', '|---|---|---|---|');
for (const [model, m] of byModel) {
  for (const r of m.solve?.rows ?? []) {
    const s = (x) => `${f(x.inject_ms)} / ${f(x.cell_ms)} / ${f(x.solver_ms)} / ${f(x.head_ms)}`;
    out.push(`| ${model} | ${r.batch} | ${s(r.cpu)} | ${s(r.cpu1)} |`);
  }
}

out.push('', '## Where a WebGPU cell run goes: the host round trip', '',
  'The cell chained 20 times, z ← f(z). Host chain: each state copied to the GPU and back, as the TypeScript solver does. Device chain: outputs fed back as GPU tensors (IO binding), the last one read back. Round trip = host − device per evaluation. Readback: the head run on a GPU-resident state with its small output on the host, the least a solver that keeps its state on the GPU still pays per iteration to read its residuals.', '',
  '| model | batch | state KiB | host chain ms / eval | device chain ms / eval | round trip ms (share) | readback ms |', '|---|---|---|---|---|---|---|');
for (const [model, m] of byModel) {
  for (const r of m.iobinding?.iobinding ?? []) {
    if (r.error) { out.push(`| ${model} | ${r.batch} | failed: ${r.error} | | | | |`); continue; }
    out.push(`| ${model} | ${r.batch} | ${f(r.state_bytes / 1024, 0)} | ${f(r.host_chain_ms_per_eval, 3)} | ${f(r.device_chain_ms_per_eval, 3)} | ${f(r.round_trip_ms_per_eval, 3)} (${f(100 * r.round_trip_share, 0)}%) | ${r.head_readback_ms === undefined ? '–' : f(r.head_readback_ms, 3)} |`);
  }
}

out.push('', '## The solver\'s state on the GPU (solverPlacement "device")', '',
  'Broyden\'s vector work as ONNX graphs on the WebGPU provider (runtime/device-solve.ts): per iteration the cell, a measure graph (three sums per sample read back) and the step graph. Against cpu16 from the same process (these cpu16 figures are a second sample of the same configuration as above).', '',
  '| model | batch | cpu16 | webgpu, state on GPU | split: inject / cell / solver / head | speed-up over cpu16 | max \\|Δ\\| all / converged (both converged) | NFE |', '|---|---|---|---|---|---|---|---|');
for (const [model, m] of byModel) {
  for (const r of m.device?.rows ?? []) {
    const p = r.parity.gpu_device, d = r.gpu_device;
    out.push(`| ${model} | ${r.batch} | ${f(r.cpu.total_ms)} | ${f(d.total_ms)} | ${f(d.inject_ms)} / ${f(d.cell_ms)} / ${f(d.solver_ms)} / ${f(d.head_ms)} | ${f(r.cpu.total_ms / d.total_ms)}× | ${e(p.max_abs_delta)} / ${e(p.max_abs_delta_converged)} (${p.both_converged}/${p.samples}) | ${f(r.cpu.nfe_mean)} / ${f(d.nfe_mean)} |`);
  }
}
const failures = [...byModel.values()].flatMap((m) => m.failures);
if (failures.length) out.push('', '## Providers that did not load', '', ...failures.map((x) => `- ${x}`));
process.stdout.write(out.join('\n') + '\n');
