#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { isDeqError } from '../errors.js';
import { MODEL_FLAGS, intFlag, numberFlag, sessionFlags, solverFlags, usage } from './options.js';

const HELP = `deq-serve — serve Deep Equilibrium Models exported to ONNX

Usage:
  deq-serve serve [options]                     serve every bundle in --models-dir over HTTP
  deq-serve inspect <bundle> [--json]           manifest summary + parity check (exit 1 on failure)
  deq-serve run <bundle> --input <file.json|.npy>
                                                one inference, printed as JSON
  deq-serve eval <bundle>... --dataset fashion-mnist [--limit N] [--tols 1e-2,1e-3,1e-4]
                 [--batch 32] [--out docs/results/fashion-mnist.md]
  deq-serve eval <bundle> --dataset brown [--limit N] [--batch 16] [--out docs/results/brown.md]
                                                validation/test perplexity + Kneser-Ney trigram baseline
  deq-serve score <bundle> --text "..." [--json]
                                                per-token log-probabilities, total and perplexity
  deq-serve bench <bundle> [--batch 1] [--runs 200] [--warmup 20]
                                                ONNX time vs. solver time for one solve

Model options (inspect, run, eval, bench):
  --tol X  --max-iter N  --solver broyden|anderson|fixed-point  --stop-mode abs|rel  --history M
  --ep cpu|webgpu|cuda[,fallback…]  --threads N

Run \`deq-serve serve --help\` for server options.
`;

type Command = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  async serve(args) {
    const { loadConfig, startServer, SETTINGS } = await import('../server/index.js');
    if (args.includes('--help') || args.includes('-h')) {
      const rows = SETTINGS.map((s) => `  ${s.flag.padEnd(22)} ${s.env.padEnd(24)} ${s.help}`);
      process.stdout.write(`deq-serve serve [options]\n\nEvery option can also be set by its environment variable.\n\n${rows.join('\n')}\n`);
      return 0;
    }
    const config = loadConfig(args, process.env);
    await startServer(config, { handleSignals: true });
    // Runs until a signal; the server's shutdown handler sets the exit code.
    return new Promise<number>(() => {});
  },
  async score(args) {
    const { values, positionals } = parseArgs({ args, options: { ...MODEL_FLAGS, text: { type: 'string' }, 'max-chars': { type: 'string' } }, allowPositionals: true });
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
  async inspect(args) {
    const { values, positionals } = parseArgs({ args, options: MODEL_FLAGS, allowPositionals: true });
    const { inspect } = await import('./inspect.js');
    return inspect(onePositional(positionals, 'bundle'), sessionFlags(values), values.json === true);
  },
  async run(args) {
    const { values, positionals } = parseArgs({ args, options: { ...MODEL_FLAGS, input: { type: 'string' } }, allowPositionals: true });
    if (!values.input) throw usage('run needs --input <file.json|file.npy>');
    const { runFile } = await import('./run.js');
    return runFile(onePositional(positionals, 'bundle'), values.input, sessionFlags(values), solverFlags(values));
  },
  async eval(args) {
    const { values, positionals } = parseArgs({
      args,
      options: { ...MODEL_FLAGS, dataset: { type: 'string' }, limit: { type: 'string' }, tols: { type: 'string' }, batch: { type: 'string' }, out: { type: 'string' }, 'latency-images': { type: 'string' }, 'trace-images': { type: 'string' } },
      allowPositionals: true,
    });
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
    });
    const brief = reports.map((r) => ({ model: r.name, accuracy: r.full.accuracy, nfe: r.full.nfe, not_converged: r.full.notConverged, ms_per_image_batch1: r.msPerImageBatch1, sweep: r.sweep.map((s) => ({ tol: s.tol, accuracy: s.accuracy, nfe_mean: s.nfe.mean })) }));
    process.stdout.write(JSON.stringify(brief, null, 2) + '\n');
    return 0;
  },
  async bench(args) {
    const { values, positionals } = parseArgs({
      args,
      options: { ...MODEL_FLAGS, batch: { type: 'string' }, runs: { type: 'string' }, warmup: { type: 'string' } },
      allowPositionals: true,
    });
    const { bench } = await import('../eval/bench.js');
    const report = await bench(onePositional(positionals, 'bundle'), {
      batch: values.batch === undefined ? 1 : intFlag('--batch', values.batch),
      runs: values.runs === undefined ? 200 : intFlag('--runs', values.runs),
      warmup: values.warmup === undefined ? 20 : intFlag('--warmup', values.warmup),
      solver: solverFlags(values),
      session: sessionFlags(values),
    });
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return 0;
  },
};

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

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    if (isDeqError(err)) {
      process.stderr.write(`deq-serve: ${err.message} [${err.code}]\n`);
      process.exitCode = err.code === 'DEQ_ERR_CONFIG_INVALID' ? 2 : 1;
    } else if (err instanceof TypeError && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`deq-serve: ${err.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`deq-serve: unexpected error: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
