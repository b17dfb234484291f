import { checkParity, DeqModel, type ParityReport } from '../runtime/index.js';
import { modelInputs, modelOutputs, type SessionConfig, type TensorSpec } from '../runtime/index.js';
import type { SolverOptions } from '../solver/index.js';
import { reportFallbacks } from './fallbacks.js';

/**
 * Prints the manifest summary and the parity check; resolves to the exit code.
 * Solver flags override the exporter's parity settings for the parity solves.
 */
export async function inspect(dir: string, session: Partial<SessionConfig>, json: boolean, solver: Partial<SolverOptions> = {}): Promise<number> {
  const model = await DeqModel.load(dir, session);
  reportFallbacks(model);
  try {
    const m = model.manifest;
    const report = await checkParity(model, solver);
    const overridden = Object.keys(solver).length ? solver : undefined;
    const d = model.solverDefaults;
    if (json) {
      process.stdout.write(JSON.stringify({ name: m.name, task: m.task, provider: model.provider, solver: m.solver, state: m.state, provenance: m.provenance, parity: { ...report, ...(overridden ? { solver_overrides: overridden } : {}) } }, null, 2) + '\n');
    } else {
      const lines = [
        `${m.name} (version ${m.version ?? '-'}): ${m.task}`,
        m.description ? `  ${m.description}` : '',
        `  provider       ${model.provider}`,
        `  inputs         ${modelInputs(m).map(io).join(', ')}`,
        `  outputs        ${modelOutputs(m).map(io).join(', ')}`,
        `  graphs         ${(['inject', 'cell', 'head'] as const).filter((g) => m.graphs[g]).join(', ')}`,
        `  state shape    [${m.state.shape.join(', ')}]${m.state.pad ? ` (pad ${m.state.pad}: the cell is causal along axis 0)` : ''}`,
        `  solver         ${d.method}, tol ${d.tol} (${d.stopMode}), max_iter ${d.maxIter}${d.method === 'fixed-point' ? `, damping ${d.damping}` : `, history ${d.history}`}`,
        m.labels ? `  labels         ${m.labels.join(', ')}` : '',
        m.tokenizer ? `  tokenizer      ${m.tokenizer.kind}, |V| ${model.bundle.vocab?.length}, context ${m.tokenizer.context}` : '',
        m.provenance ? `  provenance     ${provenanceLine(m.provenance)}` : '',
        stabilityLine(m.provenance?.stability),
        overridden ? `  parity solver  overridden by flags: ${JSON.stringify(overridden)}` : '',
        parityLines(report),
      ];
      process.stdout.write(lines.filter(Boolean).join('\n') + '\n');
    }
    return report.passed ? 0 : 1;
  } finally {
    await model.release();
  }
}

/** The exporter's check of the manifest's default solver on the parity inputs (deq_serve_export). */
function stabilityLine(s: unknown): string {
  const st = s as { default?: { method: string; converged: number; of: number }; suggestion?: unknown } | undefined;
  if (!st?.default) return '';
  const d = st.default;
  const ok = d.converged === d.of;
  return `  stability      ${ok ? 'ok' : 'WARNING'}: the default solver (${d.method}) converged on ${d.converged} of ${d.of} parity inputs at export` +
    (!ok && st.suggestion ? `; the exporter suggests solver ${JSON.stringify(st.suggestion)}` : '');
}

function io(t: TensorSpec): string {
  return `${t.name} ${t.dtype}[${t.shape.join(', ')}]`;
}

function provenanceLine(p: Record<string, unknown>): string {
  const keys = ['dataset', 'jr_weight', 'epochs', 'spectral_radius', 'parity_selection'];
  const parts = keys.filter((k) => p[k] !== undefined).map((k) => `${k}=${JSON.stringify(p[k])}`);
  if (p.metrics && typeof p.metrics === 'object') parts.push(`metrics=${JSON.stringify(p.metrics)}`);
  return parts.join(' ');
}

function parityLines(r: ParityReport): string {
  if (r.cases.length === 0) return '  parity         FAIL: the bundle ships no parity vectors';
  const rows = r.cases.map((c) => `    case ${c.index}: max |Δ| ${c.maxDeviation.toExponential(2)} (${c.worstOutput})` +
    `${c.argmaxMatch === undefined ? '' : `, argmax ${c.argmaxMatch ? 'same' : 'DIFFERENT'}`}, ${c.iterations} evals, residual ${c.residual.toExponential(2)}` +
    `${c.converged ? '' : ', NOT CONVERGED (TypeScript)'}${c.referenceConverged ? '' : ', NOT CONVERGED (reference)'}` +
    `${c.defaultConverged ? '' : ', default solver NOT CONVERGED'}` +
    `${c.failure ? ` -> FAIL: ${c.failure}` : ''}`);
  const failed = r.cases.filter((c) => c.failure).length;
  const served = r.cases.filter((c) => c.defaultConverged).length;
  const servedLine = `  default solver ${served === r.cases.length ? 'ok' : 'WARNING'}: the manifest's solver converges on ${served} of ${r.cases.length} parity inputs`;
  return [`  parity         ${r.passed ? 'PASS' : 'FAIL'}: max |Δ| ${r.maxDeviation.toExponential(2)} (tolerance ${r.atol}) over ${r.cases.length} cases` +
    (failed ? `, ${failed} failed (a case passes only if both solves converged and agree)` : ''), ...rows, servedLine].join('\n');
}
