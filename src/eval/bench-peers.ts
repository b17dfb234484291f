import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DeqError } from '../errors.js';
import { planWindows, scoreStream } from '../pipelines/text-scoring.js';
import { DeqModel, type SessionConfig } from '../runtime/index.js';
import type { SolverKernel } from '../solver/index.js';
import { accuracy, loadAverage, mean, perThreads, RECIPE_PYTHON, runDeq, TorchSide, type TorchReady, type TorchResult } from './bench-compare.js';
import { benchImages, benchWindows, windowTokens, type BenchImages, type BenchWindows } from './bench-inputs.js';
import { machineName } from './bench-solve.js';
import { markdownTable } from './markdown-table.js';

/**
 * The peers `bench compare --peers` runs beside deq-serve (issue #29), each in its own process:
 * - `pytorch`: the recipe's modules and solver under the recipes' interpreter (Debian's PyTorch 1.13), eager;
 * - `torch-eager`, `torch-compile`: the same under current PyTorch from PyPI (the peers' venv), eager and
 *   with torch.compile (compile time reported apart);
 * - `torchdeq`: the model written with torchdeq, its own Broyden (get_deq);
 * - `onnxruntime`: the bundle's three graphs in ONNX Runtime's Python API with a NumPy Broyden loop
 *   written to deq-serve's solver contract (models/recipes/numpy_broyden.py).
 */
export const PEERS = ['pytorch', 'torch-eager', 'torch-compile', 'torchdeq', 'onnxruntime'] as const;
export type PeerName = (typeof PEERS)[number];

const RECIPES = fileURLToPath(new URL('../../models/recipes/', import.meta.url));

/** Where models/recipes/make-bench-venv.sh puts the peers' venv by default. */
export function defaultPeersPython(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(cache, 'deq-serve', 'bench-peers', 'bin', 'python');
}

/** What each peer needs to import, and how its process is started. */
function peerCommand(peer: PeerName, bundle: string, o: { python: string; peersPython: string }): { python: string; args: string[]; imports: string } {
  switch (peer) {
    case 'pytorch': return { python: o.python, args: [join(RECIPES, 'bench_torch.py'), bundle], imports: 'torch, onnx, numpy' };
    case 'torch-eager': return { python: o.peersPython, args: ['-W', 'ignore', join(RECIPES, 'bench_torch.py'), '--peer', 'eager', bundle], imports: 'torch, onnx, numpy' };
    case 'torch-compile': return { python: o.peersPython, args: ['-W', 'ignore', join(RECIPES, 'bench_torch.py'), '--peer', 'compile', bundle], imports: 'torch, onnx, numpy' };
    case 'torchdeq': return { python: o.peersPython, args: ['-W', 'ignore', join(RECIPES, 'bench_torch.py'), '--peer', 'torchdeq', bundle], imports: 'torch, torchdeq, onnx, numpy' };
    case 'onnxruntime': return { python: o.peersPython, args: [join(RECIPES, 'bench_ort.py'), bundle], imports: 'onnxruntime, numpy' };
  }
}

/** Why a peer cannot run here (its interpreter cannot import what it needs), or null when it can. */
export function peerUnavailable(python: string, imports: string): string | null {
  if (python !== RECIPE_PYTHON && !existsSync(python)) return `${python} does not exist (make the peers' venv: models/recipes/make-bench-venv.sh)`;
  const r = spawnSync(python, ['-c', `import ${imports}`], { encoding: 'utf8', timeout: 120_000 });
  if (r.error || r.status !== 0) return `${python} cannot import ${imports}: ${r.error ? r.error.message : (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`)}`;
  return null;
}

/** Parses `--peers a,b` (or `all`). */
export function parsePeers(raw: string): PeerName[] {
  const names = raw.split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (names.length === 1 && names[0] === 'all') return [...PEERS];
  for (const n of names) {
    if (!(PEERS as readonly string[]).includes(n)) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `--peers: unknown peer "${n}" (one of ${PEERS.join(', ')}, or all)`);
  }
  if (names.length === 0) throw new DeqError('DEQ_ERR_CONFIG_INVALID', '--peers needs at least one peer');
  return [...new Set(names)] as PeerName[];
}

/** Thread counts by default: 1 per side, and every core where the machine has more than 2. */
export function defaultThreads(cores = availableParallelism()): number[] {
  return cores > 2 ? [1, cores] : [1];
}

export interface BenchPeersOptions {
  peers: PeerName[];
  batches: number[];
  threads: number[];
  images?: number;
  windows?: number;
  rounds: number;
  /** The `pytorch` peer's interpreter (Debian's python3 with python3-torch). */
  python: string;
  /** Every other peer's interpreter: the venv of models/recipes/make-bench-venv.sh. */
  peersPython: string;
  session: Partial<SessionConfig>;
  dataDir?: string;
  corpusDir?: string;
  kernel?: SolverKernel;
}

/** One peer in one row; times per sample (image or window). */
export interface PeerCell {
  peer: PeerName;
  ms: number;
  /** Peer ms / deq-serve ms: above 1 deq-serve is faster, below 1 the peer is. */
  ratio: number;
  nfe: number;
  /** Max |Δ| against deq-serve's logits (images) or scored tokens' log-probabilities (windows). */
  max_abs_diff: number;
  /** Samples whose NFE differs from deq-serve's. */
  nfe_differs: number;
  /** torch-compile: wall time of the calls that met a new shape (compilation), over the row's rounds. */
  compile_s?: number;
  accuracy?: number;
  tokens_per_s?: number;
  perplexity?: number;
}

export interface PeersRow {
  batch: number;
  threads: number;
  deq_serve_ms: number;
  nfe_deq_serve: number;
  accuracy_deq_serve?: number;
  tokens_per_s_deq_serve?: number;
  perplexity_deq_serve?: number;
  /** Windows per row (language models) or images per row. */
  samples: number;
  peers: PeerCell[];
}

export interface PeersReport {
  model: string;
  task: 'image-classification' | 'language-model';
  solver: { method: string; tol: number; stop_mode: string; max_iter: number; history: number };
  solver_kernel: string;
  machine: string;
  load_average: number[];
  inputs: string;
  /** Each peer that ran: its versions as it reported them at start-up. */
  peers: { peer: PeerName; versions: string }[];
  /** Each peer asked for that could not run here, and why. */
  unavailable: { peer: PeerName; why: string }[];
  rows: PeersRow[];
}

interface PeerResult extends TorchResult { logits?: number[]; logprobs?: number[]; values?: number[]; windows?: number; compile_s?: number }
interface PeerReady extends TorchReady { peer?: string; onnxruntime?: string; numpy?: string }

interface RunningPeer { name: PeerName; side: TorchSide; versions: string }

/** `deq-serve bench compare --peers …`: deq-serve against each available peer, rounds alternating. */
export async function benchPeers(dir: string, o: BenchPeersOptions): Promise<PeersReport> {
  const probe = await DeqModel.load(dir, o.session);
  let images: BenchImages | null = null;
  let windows: BenchWindows | null = null;
  let solver: PeersReport['solver'];
  try {
    windows = await benchWindows(probe, o.corpusDir);
    if (windows && o.images !== undefined) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `--images: ${probe.name} is a language model, compared over scoring windows (--windows)`);
    if (!windows && o.windows !== undefined) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `--windows: ${probe.name} is not a language model; image classifiers are compared over images (--images)`);
    if (!windows) images = await benchImages(probe, o.images ?? 64, o.dataDir);
    const s = probe.manifest.solver;
    solver = { method: s.method, tol: s.tol, stop_mode: s.stop_mode, max_iter: s.max_iter, history: s.history ?? 8 };
  } finally {
    await probe.release();
  }
  if (!windows && !images) {
    throw new DeqError('DEQ_ERR_INVALID_INPUT', `${dir}: bench compare supports the Fashion-MNIST image bundles (28×28 grayscale; needs the Fashion-MNIST test set, --data-dir) and Brown language models`);
  }
  const bundle = resolve(dir);
  const unavailable: PeersReport['unavailable'] = [];
  const running: RunningPeer[] = [];
  const work = await mkdtemp(join(tmpdir(), 'deq-bench-peers-'));
  try {
    for (const peer of o.peers) {
      const cmd = peerCommand(peer, bundle, o);
      const why = peerUnavailable(cmd.python, cmd.imports);
      if (why) {
        unavailable.push({ peer, why });
        continue;
      }
      const side = new TorchSide(cmd.python, bundle, cmd.args);
      try {
        const ready = (await side.ready()) as PeerReady;
        const versions = ready.onnxruntime ? `onnxruntime ${ready.onnxruntime}, numpy ${ready.numpy}` : `torch ${ready.torch}, BLAS ${ready.blas || 'unknown'}`;
        running.push({ name: peer, side, versions });
      } catch (err) {
        side.close();
        unavailable.push({ peer, why: err instanceof Error ? err.message : String(err) });
      }
    }
    const base = { solver, peers: running.map((p) => ({ peer: p.name, versions: p.versions })), unavailable };
    return windows ? await peersWindows(dir, windows, o, running, work, base) : await peersImages(dir, images!, o, running, work, base);
  } finally {
    for (const p of running) p.side.close();
    await rm(work, { recursive: true, force: true });
  }
}

type ReportBase = Pick<PeersReport, 'solver' | 'peers' | 'unavailable'>;

/**
 * A warm-up round, then `rounds` timed ones: deq-serve, then each peer in turn; each keeps its fastest.
 * A peer's compile time is summed over every round of the row (the warm-up's, in practice).
 */
async function rounds<D extends { msPerSample: number }>(n: number, deq: () => Promise<D>, peers: RunningPeer[], cmd: (p: RunningPeer) => object): Promise<{ deq: D; deqMs: number; peer: { last: PeerResult; ms: number; compileS?: number }[] }> {
  if (!(n >= 1)) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `--rounds must be at least 1 (got ${n})`);
  let deqBest = Infinity;
  let last: D | null = null;
  const out = peers.map(() => ({ last: null as PeerResult | null, ms: Infinity, compileS: undefined as number | undefined }));
  for (let round = -1; round < n; round++) {
    const d = await deq();
    if (round >= 0) {
      deqBest = Math.min(deqBest, d.msPerSample);
      last = d;
    }
    for (const [i, p] of peers.entries()) {
      const r = await p.side.run<PeerResult>(cmd(p));
      if (r.compile_s !== undefined) out[i].compileS = (out[i].compileS ?? 0) + r.compile_s;
      if (round >= 0) {
        out[i].ms = Math.min(out[i].ms, r.ms_per_sample);
        out[i].last = r;
      }
    }
  }
  return { deq: last!, deqMs: deqBest, peer: out.map((x) => ({ last: x.last!, ms: x.ms, compileS: x.compileS })) };
}

function nfeDiffers(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let k = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) k++;
  return k + Math.abs(a.length - b.length);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return NaN;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function peersImages(dir: string, images: BenchImages, o: BenchPeersOptions, peers: RunningPeer[], work: string, base: ReportBase): Promise<PeersReport> {
  const inputs = join(work, 'inputs.f32');
  await writeFile(inputs, new Uint8Array(images.input.buffer, images.input.byteOffset, images.input.byteLength));
  const r = await perThreads(dir, o, async (model, batch, threads): Promise<PeersRow> => {
    const count = Math.max(batch, Math.floor(images.count / batch) * batch);
    const sampleShape = model.manifest.graphs.inject?.inputs[0].shape ?? [images.per];
    const res = await rounds(o.rounds, () => runDeq(model, images, batch, count), peers, (p) => p.name === 'onnxruntime'
      ? { cmd: 'run', batch, threads, inputs, dtype: 'float32', sample_shape: sampleShape, count, output: 'logits' }
      : { cmd: 'run', batch, threads, inputs, count });
    const d = res.deq;
    const classes = d.logits.length / count;
    return {
      batch, threads, samples: count,
      deq_serve_ms: res.deqMs, nfe_deq_serve: mean(d.nfe), accuracy_deq_serve: accuracy(d.logits, images.labels, count, classes),
      peers: peers.map((p, i): PeerCell => {
        const t = res.peer[i];
        const logits = Float32Array.from(t.last.logits ?? t.last.values ?? []);
        return {
          peer: p.name, ms: t.ms, ratio: t.ms / res.deqMs, nfe: mean(t.last.nfe), nfe_differs: nfeDiffers(d.nfe, t.last.nfe),
          max_abs_diff: maxAbsDiff(d.logits, logits), accuracy: accuracy(logits, images.labels, count, classes),
          ...(t.compileS !== undefined ? { compile_s: t.compileS } : {}),
        };
      }),
    };
  });
  return { model: r.name, task: 'image-classification', ...base, solver_kernel: r.kernel, machine: machineName(), load_average: loadAverage(), inputs: images.source, rows: r.rows };
}

/**
 * Windows as bench compare scores them (compareWindows): full windows over a prefix of the Brown test
 * split. The PyTorch peers plan the windows themselves (the recipe's windows_plan); the ONNX Runtime
 * peer is given each window's input and targets, built here from planWindows, and returns every
 * position's log-probability, of which the scored ones are kept.
 */
async function peersWindows(dir: string, w: BenchWindows, o: BenchPeersOptions, peers: RunningPeer[], work: string, base: ReportBase): Promise<PeersReport> {
  const { context, stride, bosId } = w.layout;
  const want = o.windows ?? 64;
  const counts = o.batches.map((b) => Math.max(b, Math.floor(want / b) * b));
  const need = windowTokens(Math.max(...counts), context, stride);
  if (need > w.ids.length) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `${Math.max(...counts)} windows need ${need} tokens; the Brown test split has ${w.ids.length}`);
  const ids = w.ids.slice(0, need);
  const idsFile = join(work, 'ids.i32');
  await writeFile(idsFile, new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength));
  const r = await perThreads(dir, o, async (model, batch, threads): Promise<PeersRow> => {
    const count = Math.max(batch, Math.floor(want / batch) * batch);
    const tokens = windowTokens(count, context, stride);
    const stream = ids.subarray(0, tokens);
    const plan = planWindows(tokens, context, stride);
    const x = new BigInt64Array(plan.length * context), y = new BigInt64Array(plan.length * context);
    for (const [k, p] of plan.entries()) {
      x[k * context] = BigInt(bosId);
      for (let j = 0; j < context; j++) {
        if (j > 0) x[k * context + j] = BigInt(stream[p.start + j - 1]);
        y[k * context + j] = BigInt(stream[p.start + j]);
      }
    }
    const xFile = join(work, `x-${count}.i64`), yFile = join(work, `y-${count}.i64`);
    await writeFile(xFile, new Uint8Array(x.buffer));
    await writeFile(yFile, new Uint8Array(y.buffer));
    const spec = { ...w.layout, batch };
    const res = await rounds(o.rounds, async () => {
      const s = await scoreStream(stream, spec, (req) => model.infer(req));
      return { msPerSample: s.ms / s.windows, logprobs: s.logprobs, nfe: Array.from(s.solver.iterations) };
    }, peers, (p) => p.name === 'onnxruntime'
      ? { cmd: 'run', batch, threads, inputs: xFile, dtype: 'int64', sample_shape: [context], count: plan.length, targets: yFile, output: 'target_logprobs' }
      : { cmd: 'run', batch, threads, ids: idsFile, tokens, context, stride, bos: bosId });
    const d = res.deq;
    const perWindowTokens = tokens / count;
    const sum = (v: ArrayLike<number>) => { let s = 0; for (let i = 0; i < tokens; i++) s += v[i]; return s; };
    const sumDeq = sum(d.logprobs);
    return {
      batch, threads, samples: count,
      deq_serve_ms: res.deqMs, nfe_deq_serve: mean(d.nfe),
      tokens_per_s_deq_serve: (1000 * perWindowTokens) / res.deqMs, perplexity_deq_serve: Math.exp(-sumDeq / tokens),
      peers: peers.map((p, i): PeerCell => {
        const t = res.peer[i].last;
        const lp = t.values ? scoredTokens(t.values, plan, context, tokens) : Float64Array.from(t.logprobs ?? []);
        return {
          peer: p.name, ms: res.peer[i].ms, ratio: res.peer[i].ms / res.deqMs, nfe: mean(t.nfe), nfe_differs: nfeDiffers(d.nfe, t.nfe),
          max_abs_diff: maxAbsDiff(d.logprobs.subarray(0, tokens), lp), tokens_per_s: (1000 * perWindowTokens) / res.peer[i].ms,
          perplexity: Math.exp(-sum(lp) / tokens),
          ...(res.peer[i].compileS !== undefined ? { compile_s: res.peer[i].compileS } : {}),
        };
      }),
    };
  });
  return {
    model: r.name, task: 'language-model', ...base, solver_kernel: r.kernel, machine: machineName(), load_average: loadAverage(),
    inputs: `${w.source}, the first ${context}-token windows at stride ${stride}`, rows: r.rows,
  };
}

/** Per-window log-probabilities [windows × context] → one per token of the stream, from the window that scores it. */
export function scoredTokens(values: ArrayLike<number>, plan: { start: number; length: number; scoreFrom: number }[], context: number, tokens: number): Float64Array {
  const out = new Float64Array(tokens);
  for (const [k, p] of plan.entries()) {
    for (let j = p.scoreFrom; j < p.length; j++) out[p.start + j] = values[k * context + j];
  }
  return out;
}

const f = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : String(x));
const exp = (x: number) => (Number.isFinite(x) ? x.toExponential(1) : String(x));

/** The ratio as read in a table: "3.1× slower" when the peer takes longer than deq-serve, "1.4× faster" when it wins. */
export function ratioText(ratio: number): string {
  if (!Number.isFinite(ratio) || ratio <= 0) return '–';
  return ratio >= 1 ? `${ratio.toFixed(1)}× slower` : `${(1 / ratio).toFixed(1)}× faster`;
}

/** The report as a Markdown page for docs/results/: one table per peer, and the rows where a peer wins, said plainly. */
export function benchPeersMarkdown(r: PeersReport, command: string): string {
  const lm = r.task === 'language-model';
  const unit = lm ? 'window' : 'image';
  const s = r.solver;
  const lines = [
    `# bench compare: ${r.model}, deq-serve vs ${r.peers.map((p) => p.peer).join(', ') || 'no peer'}`,
    '',
    `Machine: ${r.machine}; load average at start ${r.load_average.join(' / ')} (a load above the core count means the machine was shared: compare within a row, where the sides alternate). deq-serve solver kernel ${r.solver_kernel}. Inputs: ${r.inputs}.`,
    '',
    `Every side solves with the bundle's settings: ${s.method}, tol ${s.tol} (${s.stop_mode}), at most ${s.max_iter} evaluations of f, memory ${s.history}.`,
    '',
    `Reproduce: \`${command}\``,
    '',
    'Peers:',
    ...r.peers.map((p) => `- ${p.peer}: ${p.versions}`),
    ...r.unavailable.map((p) => `- ${p.peer}: not run here — ${p.why}`),
    '',
    `Per ${unit}, fastest of the alternating rounds. "vs deq-serve" is the peer's time over deq-serve's: "slower" means deq-serve wins. NFE is the mean number of evaluations of f per ${unit}; "compile s" (torch.compile) is the time of the calls that met a new shape, from a cold cache, kept out of the ms; "NFE ≠" counts the ${unit}s whose NFE differs from deq-serve's; max |Δ| is over ${lm ? 'every scored token\'s log-probability' : 'the logits'}.`,
  ];
  for (const p of r.peers) {
    const cells = r.rows.map((row) => ({ row, c: row.peers.find((x) => x.peer === p.peer)! }));
    const compile = cells.some(({ c }) => c.compile_s !== undefined);
    const header = ['batch', 'threads', 'deq-serve ms', `${p.peer} ms`, 'vs deq-serve', ...(lm ? ['deq-serve tokens/s', `${p.peer} tokens/s`] : []), 'NFE deq-serve', `NFE ${p.peer}`, 'NFE ≠', 'max abs Δ', lm ? 'perplexity deq-serve / peer' : 'accuracy deq-serve / peer', ...(compile ? ['compile s'] : [])];
    lines.push('', `## ${p.peer}`, '', ...markdownTable(header, cells.map(({ row, c }) => [
      String(row.batch), String(row.threads), f(row.deq_serve_ms, 3), f(c.ms, 3), ratioText(c.ratio),
      ...(lm ? [f(row.tokens_per_s_deq_serve ?? NaN, 0), f(c.tokens_per_s ?? NaN, 0)] : []),
      f(row.nfe_deq_serve), f(c.nfe), `${c.nfe_differs} of ${row.samples}`, exp(c.max_abs_diff),
      lm ? `${f(row.perplexity_deq_serve ?? NaN, 1)} / ${f(c.perplexity ?? NaN, 1)}` : `${f(100 * (row.accuracy_deq_serve ?? NaN), 1)}% / ${f(100 * (c.accuracy ?? NaN), 1)}%`,
      ...(compile ? [c.compile_s === undefined ? '–' : f(c.compile_s, 1)] : []),
    ])));
  }
  const wins = r.rows.flatMap((row) => row.peers.filter((c) => c.ratio < 1).map((c) => `- ${c.peer} is ${ratioText(c.ratio).replace(' faster', '')} faster than deq-serve at batch ${row.batch}, ${row.threads} thread${row.threads === 1 ? '' : 's'}.`));
  const differs = r.rows.flatMap((row) => row.peers.filter((c) => c.nfe_differs > 0).map((c) => `- ${c.peer} at batch ${row.batch}, ${row.threads} thread${row.threads === 1 ? '' : 's'}: ${c.nfe_differs} of ${row.samples} ${unit}s stopped at a different NFE (mean ${f(c.nfe)} against deq-serve's ${f(row.nfe_deq_serve)}).`));
  lines.push('', '## Where a peer wins', '', ...(wins.length ? wins : ['- Nowhere in this run: deq-serve was faster in every row.']));
  if (differs.length) lines.push('', '## Different NFE', '', ...differs);
  lines.push('');
  return lines.join('\n');
}
