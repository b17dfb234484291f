// `deq-serve classify <bundle> image.png`: the image-classification task's CLI command (pipelines/tasks.ts).
import { readFile } from 'node:fs/promises';
import { ImageClassificationPipeline } from '../pipelines/image-classification.js';
import type { SessionConfig } from '../runtime/index.js';
import { STOP_REASONS, type SolverOptions } from '../solver/index.js';
import { reportFallbacks } from './fallbacks.js';

export interface ClassifyCommandOptions {
  solver?: Partial<SolverOptions>;
  session?: Partial<SessionConfig>;
  topK?: number;
  json?: boolean;
}

/** Classifies one image file; returns the printable answer (the top-k labels with probabilities, or JSON). */
export async function classifyCommand(bundleDir: string, imageFile: string, opts: ClassifyCommandOptions = {}): Promise<string> {
  const bytes = await readFile(imageFile);
  const pipeline = await ImageClassificationPipeline.load(bundleDir, opts.session);
  reportFallbacks(pipeline.model);
  try {
    const r = await pipeline.classify(bytes, { topK: opts.topK ?? 5, solver: opts.solver });
    const solver = {
      method: r.options.method, iterations: r.solver.iterations[0], residual: r.solver.residual[0],
      converged: r.solver.converged[0] === 1, stop_reason: STOP_REASONS[r.solver.end[0]],
    };
    if (opts.json) return JSON.stringify({ model: pipeline.model.name, label: r.label, labels: r.labels, solver, timing: { total_ms: r.timing.totalMs } }, null, 2) + '\n';
    const width = Math.max(5, ...r.labels.map((l) => l.label.length));
    return [
      `${'label'.padEnd(width)}  probability`,
      ...r.labels.map((l) => `${l.label.padEnd(width)}  ${l.probability.toFixed(4)}`),
      '',
      `solver: ${solver.method}, ${solver.iterations} iterations, residual ${solver.residual.toPrecision(3)}, ${solver.converged ? 'converged' : `not converged (${solver.stop_reason})`}; ${r.timing.totalMs.toFixed(1)} ms`,
      '',
    ].join('\n');
  } finally {
    await pipeline.release();
  }
}
