import type { ServedModel } from './models.js';

/** What a worker reported of a loaded model (WorkerPool.modelInfo). */
export interface LoadedInfo {
  provider: string;
  fallbacks: string[];
  solverKernel: string;
  warmupMs: number;
  /** Its batching mode (--model-batching, else --batching). */
  batching: string;
}

/**
 * The models as a person reads them at start, as Triton prints its model table: name, task,
 * provider, batching mode, solver defaults and state. Printed on a terminal beside the JSON log lines.
 */
export function startupTable(models: ReadonlyMap<string, ServedModel>, info: ReadonlyMap<string, LoadedInfo>, url: string): string {
  const rows = [['model', 'task', 'provider', 'batching', 'solver', 'status']];
  for (const [name, m] of models) {
    const i = info.get(name);
    const s = m.solver;
    rows.push([
      name, m.manifest.task,
      i ? (i.fallbacks.length ? `${i.provider} (fallback)` : i.provider) : '-',
      i?.batching ?? '-',
      `${s.method}, tol ${s.tol} ${s.stopMode}, max_iter ${s.maxIter}`,
      i ? `READY (warm-up ${Math.round(i.warmupMs)} ms)` : 'NOT LOADED',
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: string[]) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(rows[0]), rule, ...rows.slice(1).map(line), '', `serving on ${url}`, ''].join('\n');
}
