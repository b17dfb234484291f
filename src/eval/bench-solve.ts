import { execFile } from 'node:child_process';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DeqModel, type SessionConfig } from '../runtime/index.js';
import type { SolverKernel, SolverOptions } from '../solver/index.js';
import { batchRequest, benchImages } from './bench-inputs.js';
import { markdownTable } from './markdown-table.js';
import { progress } from './progress.js';

export interface BenchSolveOptions {
  batches: number[];
  /** Images per row (solves per row = images / batch, at least `minRuns`). */
  images: number;
  minRuns: number;
  warmup: number;
  /** Kernels to time side by side; runs alternate between them. */
  kernels: SolverKernel[];
  /** max_iter values for the peak-RSS rows (empty: none). */
  rssMaxIters: number[];
  rssBatch: number;
  solver: Partial<SolverOptions>;
  session: Partial<SessionConfig>;
  dataDir?: string;
}

export const BENCH_SOLVE_DEFAULTS: Omit<BenchSolveOptions, 'solver' | 'session'> = {
  batches: [1, 8, 32], images: 64, minRuns: 4, warmup: 2, kernels: ['js', 'wasm', 'wasm-f32'], rssMaxIters: [10, 100, 1000], rssBatch: 32,
};

/** One batch size on one kernel. Times are per sample, ms, from the run with the median solve time (so they add up). */
export interface BenchSolveRow {
  batch: number;
  kernel: SolverKernel;
  runs: number;
  nfe_mean: number;
  solve_ms: number;
  cell_ms: number;
  solver_ms: number;
  solver_fraction: number;
  /** Solver time per sample and evaluation of f, µs. */
  solver_us_per_iter: number;
}

export interface BenchRssRow { max_iter: number; batch: number; history: number; kernel: SolverKernel; nfe_mean: number; peak_rss_mb: number }

export interface BenchSolveReport {
  model: string;
  provider: string;
  threads: number;
  solver: { method: string; tol: number; stop_mode: string; max_iter: number; history: number };
  /** The kernel the bundle gets when nothing overrides it (its manifest's solver.precision). */
  default_kernel: SolverKernel;
  inputs: string;
  machine: string;
  load_average: number[];
  rows: BenchSolveRow[];
  rss: BenchRssRow[];
}

/**
 * `deq-serve bench solve`: per batch size and kernel, how a solve's time splits into
 * cell runs (ONNX Runtime) and solver algebra, with runs of the kernels interleaved
 * so machine noise hits them alike; then peak RSS in fresh processes at growing max_iter.
 */
export async function benchSolve(dir: string, o: BenchSolveOptions): Promise<BenchSolveReport> {
  const model = await DeqModel.load(dir, o.session);
  // A model's kernel is fixed at load: one model per kernel (the default one serves its own).
  const byKernel = new Map<SolverKernel, DeqModel>([[model.solverKernel, model]]);
  const rows: BenchSolveRow[] = [];
  let report: Omit<BenchSolveReport, 'rows' | 'rss'>;
  try {
    for (const kernel of o.kernels) if (!byKernel.has(kernel)) byKernel.set(kernel, await DeqModel.load(dir, o.session, { solverKernel: kernel }));
    const images = await benchImages(model, o.images, o.dataDir);
    const opts = { ...model.solverDefaults, ...o.solver };
    report = {
      model: model.name, provider: model.provider, threads: o.session.intraOpThreads ?? 1,
      solver: { method: opts.method, tol: opts.tol, stop_mode: opts.stopMode, max_iter: opts.maxIter, history: opts.history },
      default_kernel: model.solverKernel,
      inputs: images?.source ?? 'the bundle\'s first parity input, repeated',
      machine: machineName(), load_average: loadavg().map((x) => Math.round(x * 100) / 100),
    };
    const solves = o.batches.reduce((s, b) => s + (Math.max(o.minRuns, Math.ceil(o.images / b)) + o.warmup) * o.kernels.length, 0);
    const shown = progress(`bench solve ${model.name}`, solves);
    for (const batch of o.batches) {
      const runs = Math.max(o.minRuns, Math.ceil(o.images / batch));
      const acc = new Map(o.kernels.map((k) => [k, { runs: [] as { solveMs: number; cellMs: number; nfe: number }[], nfe: 0, samples: 0 }]));
      for (let r = -o.warmup; r < runs; r++) {
        const req = batchRequest(model, images, batch, Math.max(r, 0) * batch);
        req.solver = o.solver;
        for (const kernel of o.kernels) {
          const res = await byKernel.get(kernel)!.infer(req);
          shown.tick();
          if (r < 0) continue;
          const a = acc.get(kernel)!;
          const t = res.timing;
          const nfe = res.solver.iterations.reduce((s, x) => s + x, 0);
          a.runs.push({ solveMs: t.solveMs, cellMs: t.cellMs, nfe });
          a.nfe += nfe;
          a.samples += batch;
        }
      }
      for (const kernel of o.kernels) {
        const a = acc.get(kernel)!;
        // The run with the median solve time, whole: its columns add up (solve = cell + solver).
        const m = [...a.runs].sort((x, y) => x.solveMs - y.solveMs)[a.runs.length >> 1];
        const solver = m.solveMs - m.cellMs;
        rows.push({
          batch, kernel, runs, nfe_mean: a.nfe / a.samples,
          solve_ms: m.solveMs / batch, cell_ms: m.cellMs / batch, solver_ms: solver / batch, solver_fraction: solver / m.solveMs, solver_us_per_iter: (solver * 1000) / m.nfe,
        });
      }
    }
    shown.done();
  } finally {
    await Promise.all([...byKernel.values()].map((m) => m.release()));
  }
  const rss: BenchRssRow[] = [];
  const kernel = o.kernels[o.kernels.length - 1];
  const history = report.solver.history;
  for (const maxIter of o.rssMaxIters) {
    const child = fileURLToPath(new URL('./bench-rss-child.js', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, [child, dir, String(o.rssBatch), String(maxIter), String(history), kernel, String(report.threads)], { maxBuffer: 1 << 20 });
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as { peak_rss_mb: number; nfe_mean: number };
    rss.push({ max_iter: maxIter, batch: o.rssBatch, history, kernel, nfe_mean: r.nfe_mean, peak_rss_mb: r.peak_rss_mb });
  }
  return { ...report, rows, rss };
}

export function machineName(): string {
  return `${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores`;
}

const f = (x: number, d = 2) => x.toFixed(d);

/** The report as a Markdown page for docs/results/. */
export function benchSolveMarkdown(r: BenchSolveReport, command: string): string {
  const lines = [
    `# bench solve: ${r.model}`,
    '',
    `Machine: ${r.machine}; load average at start ${r.load_average.join(' / ')} (a load above the core count means the machine was shared and absolute times are inflated; compare rows of one run). Provider ${r.provider}, ${r.threads} ONNX Runtime thread(s).`,
    `Solver: ${r.solver.method}, ${r.solver.stop_mode} tol ${r.solver.tol}, max_iter ${r.solver.max_iter}, history ${r.solver.history}. Inputs: ${r.inputs}.`,
    '',
    `Reproduce: \`${command}\``,
    '',
    `Per sample, from each kernel's run with the median solve time (one run, so solve = cell + solver); runs of the kernels alternate. \`js\` is the scalar TypeScript reference, \`wasm\` the SIMD kernels in float64 arithmetic, \`wasm-f32\` the SIMD kernels in float32 arithmetic (docs/solver.md, "Kernel precision"). This bundle's default: \`${r.default_kernel}\` (its manifest's solver.precision; docs/reference/bundle-format.md).`,
    '',
    ...markdownTable(['batch', 'kernel', 'NFE', 'solve ms', 'cell ms', 'solver ms', 'solver share', 'solver µs / evaluation'],
      r.rows.map((x) => [String(x.batch), x.kernel, f(x.nfe_mean), f(x.solve_ms, 3), f(x.cell_ms, 3), f(x.solver_ms, 3), `${f(100 * x.solver_fraction, 1)}%`, f(x.solver_us_per_iter, 1)])),
    '',
  ];
  if (r.rss.length) {
    lines.push('Peak RSS of a fresh process that loads the model and runs one solve with every iteration forced (tol 1e-30):', '',
      ...markdownTable(['max_iter', 'batch', 'history', 'kernel', 'NFE', 'peak RSS MB'],
        r.rss.map((x) => [String(x.max_iter), String(x.batch), String(x.history), x.kernel, f(x.nfe_mean, 1), f(x.peak_rss_mb, 1)])), '');
  }
  return lines.join('\n');
}
