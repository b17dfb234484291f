import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus } from 'node:os';
import { dirname, basename, join } from 'node:path';
import { DeqError } from '../errors.js';
import { normalizePixels } from '../preprocess/normalize.js';
import { argmax, DeqModel, type SessionConfig } from '../runtime/index.js';
import type { SolverMethod, SolverOptions, StopMode } from '../solver/index.js';
import { readFashionMnist, type ImageSet } from './fashion-mnist.js';
import { logPlot } from './svg-plot.js';
import { summarize, type Summary } from './stats.js';
import { progress } from './progress.js';

export interface ImageEvalOptions {
  /** Evaluate only the first N test images. */
  limit?: number;
  /** Tolerances of the sweep (stop mode `sweepMode`). */
  tols: number[];
  sweepMode: StopMode;
  batch: number;
  /** Images timed one at a time for the batch-1 latency. */
  latencyImages: number;
  /** Images whose residual trace feeds the plot. */
  traceImages: number;
  solver: Partial<SolverOptions>;
  session: Partial<SessionConfig>;
  /** Markdown report to (re)generate; the SVG plot goes beside it. */
  out?: string;
  /** Folder of the IDX files; defaults to Debian's dataset-fashion-mnist. */
  dataDir?: string;
  /**
   * Caps on evaluations of f for the accuracy-against-NFE curve (no early stop): cap 1 is the
   * head at z₀, cap 2 after one application of f. Empty: no curve.
   */
  nfeCaps?: number[];
  /** Training images scored at the solver defaults, for the train-test gap (0: none). */
  trainImages?: number;
}

export interface SetResult {
  accuracy: number;
  nfe: Summary;
  residual: Summary;
  notConverged: number;
  diverged: number;
  msPerImage: number;
}

export interface ModelReport {
  name: string;
  provenance: Record<string, unknown>;
  /** The solver method and execution provider the run actually used. */
  method: SolverMethod;
  provider: string;
  tol: number;
  stopMode: StopMode;
  maxIter: number;
  full: SetResult;
  msPerImageBatch1: number;
  sweep: (SetResult & { tol: number })[];
  /** Median residual after each evaluation of f (capped solve, tight tol). */
  trace: Float64Array;
  /** Accuracy when the solver may evaluate f at most `cap` times. */
  nfeCurve: { cap: number; accuracy: number }[];
  /** Accuracy on the first `trainImages` training images, at the solver defaults. */
  train?: { images: number; accuracy: number };
}

/** Below any residual a float32 cell reaches: a capped solve then runs to its cap. */
const NO_EARLY_STOP = 1e-30;

/** Runs one model over (a prefix of) an image set at the given batch size. */
export async function evaluateSet(model: DeqModel, set: ImageSet, count: number, batch: number, solver: Partial<SolverOptions>): Promise<SetResult> {
  const p = model.manifest.preprocess;
  if (!p) throw new DeqError('DEQ_ERR_WRONG_TASK', `${model.name} is not an image classifier`);
  if (p.width !== set.cols || p.height !== set.rows || p.channels !== 1) throw new DeqError('DEQ_ERR_INVALID_INPUT', `${model.name} expects ${p.channels}×${p.height}×${p.width} images; the dataset has 1×${set.rows}×${set.cols}`);
  const per = set.rows * set.cols;
  const iterations = new Float64Array(count);
  const residual = new Float64Array(count);
  const input = new Float32Array(batch * per);
  let correct = 0, notConverged = 0, diverged = 0;
  const start = performance.now();
  const shown = progress(`${model.name} images`, count);
  for (let first = 0; first < count; first += batch) {
    const b = Math.min(batch, count - first);
    for (let i = 0; i < b; i++) normalizePixels(set.images.subarray((first + i) * per, (first + i + 1) * per), p, input, i * per);
    const res = await model.infer({ input: b === batch ? input : input.subarray(0, b * per), batch: b, solver });
    const logits = res.outputs[model.manifest.outputs.logits].data as Float32Array;
    const classes = logits.length / b;
    for (let i = 0; i < b; i++) {
      if (argmax(logits.subarray(i * classes, (i + 1) * classes)) === set.labels[first + i]) correct++;
      iterations[first + i] = res.solver.iterations[i];
      residual[first + i] = res.solver.residual[i];
      notConverged += 1 - res.solver.converged[i];
      diverged += res.solver.diverged[i];
    }
    shown.tick(b);
  }
  shown.done();
  const ms = performance.now() - start;
  return { accuracy: correct / count, nfe: summarize(iterations), residual: summarize(residual), notConverged, diverged, msPerImage: ms / count };
}

/** Median residual per evaluation over the first `images` images, solving to a fixed cap. */
async function residualTrace(model: DeqModel, set: ImageSet, images: number, maxIter: number, stopMode: StopMode): Promise<Float64Array> {
  const p = model.manifest.preprocess!;
  const per = set.rows * set.cols;
  const input = new Float32Array(images * per);
  for (let i = 0; i < images; i++) normalizePixels(set.images.subarray(i * per, (i + 1) * per), p, input, i * per);
  const res = await model.infer({ input, batch: images, solver: { tol: 1e-12, maxIter, stopMode, trace: true } });
  const median = new Float64Array(maxIter);
  const column = new Float64Array(images);
  for (let t = 0; t < maxIter; t++) {
    let k = 0;
    for (const tr of res.solver.trace!) if (t < tr.length) column[k++] = tr[t];
    median[t] = k === 0 ? NaN : summarize(column.subarray(0, k)).p50;
  }
  return median;
}

/** `deq-serve eval <bundle…> --dataset fashion-mnist`: accuracy, NFE, latency and a tolerance sweep. */
export async function evalFashionMnist(bundles: string[], opts: ImageEvalOptions): Promise<ModelReport[]> {
  const set = await readFashionMnist('test', opts.dataDir);
  const count = Math.min(opts.limit ?? set.count, set.count);
  const reports: ModelReport[] = [];
  for (const dir of bundles) {
    const model = await DeqModel.load(dir, opts.session);
    try {
      const d = { ...model.solverDefaults, ...opts.solver };
      log(`${model.name}: ${count} images at batch ${opts.batch}, ${d.method} tol ${d.tol} (${d.stopMode}), max_iter ${d.maxIter}`);
      const full = await evaluateSet(model, set, count, opts.batch, opts.solver);
      log(`  accuracy ${(full.accuracy * 100).toFixed(2)}%, mean NFE ${full.nfe.mean.toFixed(2)}`);
      const latency = await evaluateSet(model, set, Math.min(opts.latencyImages, count), 1, opts.solver);
      const sweep: ModelReport['sweep'] = [];
      for (const tol of opts.tols) {
        // The default setting was just measured in full; do not run it twice.
        const r = tol === d.tol && opts.sweepMode === d.stopMode
          ? full
          : await evaluateSet(model, set, count, opts.batch, { ...opts.solver, tol, stopMode: opts.sweepMode });
        log(`  sweep tol ${tol}: accuracy ${(r.accuracy * 100).toFixed(2)}%, mean NFE ${r.nfe.mean.toFixed(2)}`);
        sweep.push({ tol, ...r });
      }
      const trace = await residualTrace(model, set, Math.min(opts.traceImages, count), d.maxIter, opts.sweepMode);
      const nfeCurve: ModelReport['nfeCurve'] = [];
      for (const cap of opts.nfeCaps ?? []) {
        const r = await evaluateSet(model, set, count, opts.batch, { ...opts.solver, maxIter: cap, tol: NO_EARLY_STOP });
        log(`  at most ${cap} evaluations of f: accuracy ${(r.accuracy * 100).toFixed(2)}%`);
        nfeCurve.push({ cap, accuracy: r.accuracy });
      }
      let train: ModelReport['train'];
      if (opts.trainImages) {
        const trainSet = await readFashionMnist('train', opts.dataDir);
        const images = Math.min(opts.trainImages, trainSet.count);
        train = { images, accuracy: (await evaluateSet(model, trainSet, images, opts.batch, opts.solver)).accuracy };
        log(`  train accuracy (first ${images}) ${(train.accuracy * 100).toFixed(2)}%`);
      }
      reports.push({ name: model.name, provenance: model.manifest.provenance ?? {}, method: d.method, provider: model.provider, tol: d.tol, stopMode: d.stopMode, maxIter: d.maxIter, full, msPerImageBatch1: latency.msPerImage, sweep, trace, nfeCurve, train });
    } finally {
      await model.release();
    }
  }
  if (opts.out) await writeReport(reports, count, set.count, opts);
  return reports;
}

function log(line: string): void {
  process.stderr.write(line + '\n');
}

const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd'];

async function writeReport(reports: ModelReport[], count: number, setSize: number, opts: ImageEvalOptions): Promise<void> {
  const out = opts.out!;
  await mkdir(dirname(out), { recursive: true });
  const svgName = basename(out).replace(/\.md$/, '') + '-residuals.svg';
  const plotMode = opts.sweepMode;
  if ((opts.nfeCaps ?? []).length > 0) {
    await writeFile(join(dirname(out), basename(out).replace(/\.md$/, '') + '-accuracy-nfe.svg'), logPlot(
      reports.map((r, i) => ({ label: r.name, color: COLORS[i % COLORS.length], values: Float64Array.from(r.nfeCurve, (c) => c.accuracy * 100), x: Float64Array.from(r.nfeCurve, (c) => c.cap) })),
      `Test accuracy against the cap on evaluations of f (${count} images, no early stop)`, 'evaluations of f (cap)', 'accuracy (%)', { y: 'linear' },
    ));
  }
  await writeFile(join(dirname(out), svgName), logPlot(
    reports.map((r, i) => ({ label: r.name, color: COLORS[i % COLORS.length], values: r.trace })),
    `Median ${plotMode} residual vs. evaluations of f (${[...new Set(reports.map((r) => r.method))].join(', ')}, first ${Math.min(opts.traceImages, count)} test images)`, 'evaluation of f', `${plotMode} residual ‖f(z)−z‖${plotMode === 'rel' ? ' / ‖f(z)‖' : ''}`,
  ));
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const f2 = (x: number) => x.toFixed(2);
  const lines: string[] = [
    '# Fashion-MNIST results through the TypeScript runtime',
    '',
    `Generated by \`deq-serve eval ${reports.map((r) => `models/${r.name}`).join(' ')} --dataset fashion-mnist --out ${out}\` on ${new Date().toISOString().slice(0, 10)}.`,
    `Test images: ${count} of ${setSize}. Runtime: ONNX Runtime (${[...new Set(reports.map((r) => r.provider))].join(', ')} execution provider) + the TypeScript solver; no PyTorch involved.`,
    `Machine: ${machine()}.`,
    '',
    '## At the shipped solver defaults',
    '',
    '| model | JR weight | solver | accuracy | NFE mean | NFE p50 | NFE p95 | NFE max | residual p50 | residual max | not converged | ms/image (batch 1) | ms/image (batch ' + opts.batch + ') |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...reports.map((r) => `| ${r.name} | ${String(r.provenance.jr_weight ?? '?')} | ${r.method}, ${r.stopMode} tol ${r.tol}, cap ${r.maxIter} | ${pct(r.full.accuracy)} | ${f2(r.full.nfe.mean)} | ${r.full.nfe.p50} | ${r.full.nfe.p95} | ${r.full.nfe.max} | ${r.full.residual.p50.toExponential(1)} | ${r.full.residual.max.toExponential(1)} | ${r.full.notConverged} | ${f2(r.msPerImageBatch1)} | ${f2(r.full.msPerImage)} |`),
    '',
    `## Tolerance sweep (${opts.sweepMode} stop mode, batch ${opts.batch})`,
    '',
    `| tol | ${reports.map((r) => `${r.name} accuracy | ${r.name} NFE mean | ${r.name} not converged`).join(' | ')} |`,
    `|---|${reports.map(() => '---|---|---').join('|')}|`,
    ...opts.tols.map((tol, i) => `| ${tol} | ${reports.map((r) => `${pct(r.sweep[i].accuracy)} | ${f2(r.sweep[i].nfe.mean)} | ${r.sweep[i].notConverged}`).join(' | ')} |`),
    '',
    '## Convergence',
    '',
    `![residual against iteration](${svgName})`,
    '',
    'NFE counts evaluations of the cell f, the initial f(z₀) included, per image. Each image stops on its own residual.',
    '',
    ...nfeCurveSection(reports, count, opts),
    ...trainSection(reports),
  ];
  await writeFile(out, lines.join('\n'));
}

/** Accuracy against the cap on evaluations of f: does the equilibrium earn its keep? */
function nfeCurveSection(reports: ModelReport[], count: number, opts: ImageEvalOptions): string[] {
  const caps = opts.nfeCaps ?? [];
  if (caps.length === 0) return [];
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const name = basename(opts.out!).replace(/\.md$/, '') + '-accuracy-nfe.svg';
  return [
    '## Accuracy against evaluations of f',
    '',
    `Each column solves with at most the given number of evaluations of f and no early stop (${count} test images): cap 1 scores the head at z₀ = 0, cap 2 after one application of f. A model whose accuracy at cap 2 is already its converged accuracy does not need its fixed point.`,
    '',
    `| model | ${caps.join(' | ')} | converged (defaults) |`,
    `|---|${caps.map(() => '---').join('|')}|---|`,
    ...reports.map((r) => `| ${r.name} | ${r.nfeCurve.map((c) => pct(c.accuracy)).join(' | ')} | ${pct(r.full.accuracy)} |`),
    '',
    `![accuracy against evaluations of f](${name})`,
    '',
  ];
}

function trainSection(reports: ModelReport[]): string[] {
  const rows = reports.filter((r) => r.train);
  if (rows.length === 0) return [];
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  return [
    '## Train-test gap (solver defaults, eval mode, no augmentation)',
    '',
    '| model | train images | train accuracy | test accuracy | gap (points) |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.name} | ${r.train!.images} | ${pct(r.train!.accuracy)} | ${pct(r.full.accuracy)} | ${((r.train!.accuracy - r.full.accuracy) * 100).toFixed(2)} |`),
    '',
  ];
}

function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpu}, ${availableParallelism()} cores, ${process.platform}-${process.arch}, Node ${process.version}`;
}
