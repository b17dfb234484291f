import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { DeqError } from '../errors.js';
import { DeqModel, type SessionConfig } from '../runtime/index.js';
import type { SolverKernel } from '../solver/index.js';
import { batchRequest, benchImages, type BenchImages } from './bench-inputs.js';
import { machineName } from './bench-solve.js';

/** The interpreter the recipes use (Debian's python3 with python3-torch). */
export const RECIPE_PYTHON = '/usr/bin/python3';
const TORCH_SIDE = fileURLToPath(new URL('../../models/recipes/bench_torch.py', import.meta.url));

export interface BenchCompareOptions {
  batches: number[];
  threads: number[];
  /** Images per row; the same images on both sides. */
  images: number;
  /** Alternating rounds per row; each side's time is its fastest round. */
  rounds: number;
  python: string;
  session: Partial<SessionConfig>;
  dataDir?: string;
  /** deq-serve's solver kernel (default: the solver's default). */
  kernel?: SolverKernel;
}

export const BENCH_COMPARE_DEFAULTS: Omit<BenchCompareOptions, 'session'> = {
  batches: [1, 32], threads: [1, 2], images: 64, rounds: 3, python: RECIPE_PYTHON,
};

export interface BenchCompareRow {
  batch: number;
  threads: number;
  deq_serve_ms: number;
  pytorch_ms: number;
  speedup: number;
  nfe_deq_serve: number;
  nfe_pytorch: number;
  max_abs_diff: number;
  accuracy_deq_serve: number;
  accuracy_pytorch: number;
}

export interface BenchCompareReport {
  model: string;
  solver_kernel: string;
  torch: string;
  images: string;
  machine: string;
  load_average: number[];
  rows: BenchCompareRow[];
}

/** Raised (exit code 2 in the CLI) when the PyTorch side cannot run here. */
export class TorchUnavailable extends Error {}

/** Checks that `python` can import torch and onnx; throws TorchUnavailable with the reason. */
export function checkTorch(python: string): void {
  const r = spawnSync(python, ['-c', 'import torch, onnx, numpy'], { encoding: 'utf8', timeout: 120_000 });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`);
    throw new TorchUnavailable(`bench compare needs PyTorch, onnx and numpy under ${python} (Debian: apt-get install python3-torch python3-onnx python3-numpy): ${why}`);
  }
}

/**
 * `deq-serve bench compare`: the same images through deq-serve and through the recipe's
 * PyTorch model with the bundle's weights and solver settings, rounds alternating
 * between the two sides within one command, per batch size and thread count.
 */
export async function benchCompare(dir: string, o: BenchCompareOptions): Promise<BenchCompareReport> {
  checkTorch(o.python);
  const probe = await DeqModel.load(dir, o.session);
  let images: BenchImages | null;
  try {
    images = await benchImages(probe, o.images, o.dataDir);
  } finally {
    await probe.release();
  }
  if (!images) {
    throw new DeqError('DEQ_ERR_INVALID_INPUT', `${dir}: bench compare supports the Fashion-MNIST image bundles (28×28 grayscale) and needs the Fashion-MNIST test set (--data-dir)`);
  }
  const work = await mkdtemp(join(tmpdir(), 'deq-bench-'));
  const inputs = join(work, 'inputs.f32');
  await writeFile(inputs, new Uint8Array(images.input.buffer, images.input.byteOffset, images.input.byteLength));
  const torchSide = new TorchSide(o.python, resolve(dir));
  const rows: BenchCompareRow[] = [];
  let kernel = '';
  let name = '';
  try {
    const torchVersion = await torchSide.ready();
    for (const threads of o.threads) {
      const model = await DeqModel.load(dir, { ...o.session, intraOpThreads: threads });
      name = model.name;
      if (o.kernel) model.solverKernel = o.kernel;
      kernel = model.solverKernel;
      try {
        for (const batch of o.batches) {
          const count = Math.max(batch, Math.floor(images.count / batch) * batch);
          let best = { deq: Infinity, torch: Infinity };
          let deqOut: { logits: Float32Array; nfe: number[] } | null = null;
          let torchOut: TorchResult | null = null;
          // A warm-up round on each side, then the timed rounds, alternating.
          for (let round = -1; round < o.rounds; round++) {
            const d = await runDeq(model, images, batch, count);
            const t = await torchSide.run({ cmd: 'run', batch, threads, inputs, count });
            if (round < 0) continue;
            best = { deq: Math.min(best.deq, d.msPerSample), torch: Math.min(best.torch, t.ms_per_sample) };
            deqOut = d;
            torchOut = t;
          }
          const classes = deqOut!.logits.length / count;
          let maxDiff = 0;
          for (let i = 0; i < deqOut!.logits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(deqOut!.logits[i] - torchOut!.logits[i]));
          rows.push({
            batch, threads,
            deq_serve_ms: best.deq, pytorch_ms: best.torch, speedup: best.torch / best.deq,
            nfe_deq_serve: mean(deqOut!.nfe), nfe_pytorch: mean(torchOut!.nfe), max_abs_diff: maxDiff,
            accuracy_deq_serve: accuracy(deqOut!.logits, images.labels, count, classes),
            accuracy_pytorch: accuracy(Float32Array.from(torchOut!.logits), images.labels, count, classes),
          });
        }
      } finally {
        await model.release();
      }
    }
    return { model: name, solver_kernel: kernel, torch: torchVersion, images: `${images.source}`, machine: machineName(), load_average: loadavg().map((x) => Math.round(x * 100) / 100), rows };
  } finally {
    torchSide.close();
    await rm(work, { recursive: true, force: true });
  }
}

async function runDeq(model: DeqModel, images: BenchImages, batch: number, count: number): Promise<{ msPerSample: number; logits: Float32Array; nfe: number[] }> {
  const logitsName = model.manifest.outputs.logits;
  const logits: number[] = [];
  const nfe: number[] = [];
  // Inputs are built before the clock starts, as the PyTorch side reads its tensor up front.
  const reqs = [];
  for (let first = 0; first < count; first += batch) reqs.push(batchRequest(model, images, batch, first));
  const start = performance.now();
  const results = [];
  for (const req of reqs) results.push(await model.infer(req));
  const ms = performance.now() - start;
  for (const r of results) {
    logits.push(...(r.outputs[logitsName].data as Float32Array));
    nfe.push(...r.solver.iterations);
  }
  return { msPerSample: ms / count, logits: Float32Array.from(logits), nfe };
}

interface TorchResult { ms_per_sample: number; nfe: number[]; logits: number[] }

/** The PyTorch process: one per command, driven by JSON lines. */
class TorchSide {
  readonly #proc: ChildProcessWithoutNullStreams;
  readonly #lines: Interface;
  readonly #pending: ((line: string) => void)[] = [];
  #stderr = '';
  #exited: string | null = null;

  constructor(python: string, bundle: string) {
    this.#proc = spawn(python, [TORCH_SIDE, bundle], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#proc.stderr.on('data', (b: Buffer) => { this.#stderr = (this.#stderr + b.toString()).slice(-2000); });
    this.#lines = createInterface({ input: this.#proc.stdout });
    this.#lines.on('line', (l) => this.#pending.shift()?.(l));
    this.#proc.on('exit', (code) => {
      this.#exited = `PyTorch side exited (${code}): ${this.#stderr.trim().split('\n').slice(-3).join(' | ')}`;
      for (const p of this.#pending.splice(0)) p('');
    });
  }

  #next(): Promise<string> {
    if (this.#exited) return Promise.reject(new Error(this.#exited));
    return new Promise((res, rej) => this.#pending.push((l) => (l ? res(l) : rej(new Error(this.#exited ?? 'PyTorch side closed')))));
  }

  async ready(): Promise<string> {
    const line = JSON.parse(await this.#next()) as { torch: string };
    return line.torch;
  }

  async run(cmd: object): Promise<TorchResult> {
    const reply = this.#next();
    this.#proc.stdin.write(JSON.stringify(cmd) + '\n');
    return JSON.parse(await reply) as TorchResult;
  }

  close(): void {
    if (this.#exited) return;
    this.#proc.stdin.end(JSON.stringify({ cmd: 'quit' }) + '\n');
    const t = setTimeout(() => this.#proc.kill(), 5000);
    this.#proc.once('exit', () => clearTimeout(t));
  }
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

function accuracy(logits: Float32Array, labels: Uint8Array, count: number, classes: number): number {
  let ok = 0;
  for (let i = 0; i < count; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[i * classes + c] > logits[i * classes + best]) best = c;
    if (best === labels[i]) ok++;
  }
  return ok / count;
}

const f = (x: number, d = 2) => x.toFixed(d);

/** The report as a Markdown page for docs/results/. */
export function benchCompareMarkdown(r: BenchCompareReport, command: string): string {
  return [
    `# bench compare: ${r.model}, deq-serve vs PyTorch`,
    '',
    `Machine: ${r.machine}; load average at start ${r.load_average.join(' / ')} (above the core count: shared machine, absolute times inflated; the two sides alternate within each row, so compare them within a row). PyTorch ${r.torch} (the recipe's model and deq.py solver with the bundle's weights and solver settings); deq-serve solver kernel ${r.solver_kernel}. Images: ${r.images}.`,
    '',
    `Reproduce: \`${command}\``,
    '',
    'Per sample, fastest of the alternating rounds; speed-up = PyTorch ms / deq-serve ms.',
    '',
    '| batch | threads | deq-serve ms | PyTorch ms | speed-up | NFE deq-serve | NFE PyTorch | max abs Δ logits | accuracy deq-serve / PyTorch |',
    '|---|---|---|---|---|---|---|---|---|',
    ...r.rows.map((x) => `| ${x.batch} | ${x.threads} | ${f(x.deq_serve_ms, 3)} | ${f(x.pytorch_ms, 3)} | ${f(x.speedup, 1)}× | ${f(x.nfe_deq_serve)} | ${f(x.nfe_pytorch)} | ${x.max_abs_diff.toExponential(1)} | ${f(100 * x.accuracy_deq_serve, 1)}% / ${f(100 * x.accuracy_pytorch, 1)}% |`),
    '',
  ].join('\n');
}
