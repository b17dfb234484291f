import type { ParityCase, ParityFile, ParityTensor } from './bundle.js';
import type { SolverOptions } from '../solver/index.js';
import type { DeqModel } from './deq-model.js';
import { modelInputs, modelOutputs, type Manifest } from './manifest.js';

export interface ParityCaseReport {
  index: number;
  /** Largest |TypeScript − reference| over the case's float outputs. */
  maxDeviation: number;
  /** Output with the largest deviation. */
  worstOutput: string;
  /** Classifiers: whether argmax of the logits agrees. */
  argmaxMatch?: boolean;
  iterations: number;
  residual: number;
  /** The TypeScript solve reached the parity tolerance. */
  converged: boolean;
  /** The exporter's reference solve reached it (false when the bundle does not say). */
  referenceConverged: boolean;
  /** The manifest's default solver, as served, converged on this input (TypeScript). */
  defaultConverged: boolean;
  /** Why the case failed; absent when it passed. */
  failure?: string;
}

export interface ParityReport {
  atol: number;
  passed: boolean;
  maxDeviation: number;
  cases: ParityCaseReport[];
}

/**
 * Re-runs the bundle's parity cases through the TypeScript solver and ONNX
 * Runtime with the solver settings the exporter used (or `overrides` of them, as
 * `deq-serve inspect --solver …` asks), and compares outputs. A case passes only
 * if both solves converged and the outputs agree within atol (and, for
 * classifiers, the argmax): two solves stopped at the same unconverged iterate
 * agree without being the fixed point.
 */
export async function checkParity(model: DeqModel, overrides: Partial<SolverOptions> = {}): Promise<ParityReport> {
  const parity = model.bundle.parity;
  const atol = model.manifest.parity?.atol ?? 1e-3;
  if (!parity) return { atol, passed: false, maxDeviation: NaN, cases: [] };
  const m = model.manifest;
  const floatOutputs = new Set(modelOutputs(m).filter((o) => o.dtype === 'float32').map((o) => o.name));
  const logits = m.task === 'image-classification' ? m.outputs.logits : undefined;
  const cases: ParityCaseReport[] = [];
  for (const [index, c] of parity.cases.entries()) {
    const names = Object.keys(c.outputs).filter((k) => floatOutputs.has(k));
    const given = caseInputs(m, c);
    const inputs = Object.fromEntries(Object.entries(given).map(([k, t]) => [k, toTyped(t)]));
    const length = symbolicLength(m, given);
    const res = await model.infer({
      inputs,
      batch: 1,
      length,
      outputs: names,
      solver: {
        method: parity.solver.method,
        tol: parity.solver.tol,
        stopMode: parity.solver.stop_mode,
        maxIter: parity.solver.max_iter,
        history: parity.solver.history ?? model.solverDefaults.history,
        ...(parity.solver.anderson_lambda !== undefined ? { andersonLambda: parity.solver.anderson_lambda } : {}),
        ...(parity.solver.anderson_beta !== undefined ? { andersonBeta: parity.solver.anderson_beta } : {}),
        ...(parity.solver.damping !== undefined ? { damping: parity.solver.damping } : {}),
        ...overrides,
      },
    });
    let maxDeviation = 0, worstOutput = '';
    for (const name of names) {
      const got = res.outputs[name].data as Float32Array;
      const want = c.outputs[name];
      let dev = got.length === want.length ? 0 : Infinity;
      for (let i = 0; i < want.length && dev !== Infinity; i++) {
        const d = Math.abs(got[i] - want[i]);
        if (!(d <= dev)) dev = Number.isNaN(d) ? Infinity : d;
      }
      if (dev >= maxDeviation) { maxDeviation = dev; worstOutput = name; }
    }
    const report: ParityCaseReport = {
      index, maxDeviation, worstOutput,
      iterations: res.solver.iterations[0], residual: res.solver.residual[0], converged: res.solver.converged[0] === 1,
      referenceConverged: referenceConverged(parity, c),
      defaultConverged: false,
    };
    if (logits && c.outputs[logits]) report.argmaxMatch = argmax(res.outputs[logits].data as Float32Array) === argmax(c.outputs[logits]);
    // What the server runs by default: a bundle whose default solver does not reach its own
    // tol on the parity inputs serves something other than the fixed point for them.
    const served = await model.infer({ inputs, batch: 1, length, outputs: names.length ? names.slice(0, 1) : undefined, solver: {} });
    report.defaultConverged = served.solver.converged[0] === 1;
    const why = [
      report.referenceConverged ? '' : 'reference solve did not converge',
      report.converged ? '' : 'TypeScript solve did not converge',
      maxDeviation <= atol ? '' : `max |Δ| ${maxDeviation.toExponential(2)} > ${atol}`,
      report.argmaxMatch === false ? 'argmax differs' : '',
      // Held to cases from the exporter that checks it (deq_serve_export records `reference`);
      // older bundles get the warning in the report only.
      !report.defaultConverged && c.reference ? `the manifest's default solver (${model.solverDefaults.method}, tol ${model.solverDefaults.tol}, max_iter ${model.solverDefaults.maxIter}) did not converge` : '',
    ].filter(Boolean);
    if (why.length) report.failure = why.join('; ');
    cases.push(report);
  }
  const maxDeviation = Math.max(0, ...cases.map((c) => c.maxDeviation));
  const passed = cases.length > 0 && cases.every((c) => c.failure === undefined);
  return { atol, passed, maxDeviation, cases };
}

/** Whether the exporter's reference solve of a case converged, from what the bundle records. */
function referenceConverged(p: ParityFile, c: ParityCase): boolean {
  if (c.reference) return c.reference.converged === true;
  // Older exporter: only the final relative residual was written.
  if (c.solver_rel_residual !== undefined && p.solver.stop_mode === 'rel') return c.solver_rel_residual < p.solver.tol;
  return false;
}

/** A parity case's tensors by model-input name (new `inputs`, or the older `input` + `extra_inputs`). */
export function caseInputs(m: Manifest, c: ParityCase): Record<string, ParityTensor> {
  if (c.inputs) return { ...c.extra_inputs, ...c.inputs };
  const first = modelInputs(m)[0].name;
  return { ...c.extra_inputs, ...(c.input ? { [first]: c.input } : {}) };
}

function symbolicLength(m: Manifest, given: Record<string, ParityTensor>): number | undefined {
  for (const spec of modelInputs(m)) {
    const i = spec.shape.indexOf(-1);
    if (i >= 0 && given[spec.name]) return given[spec.name].shape[i];
  }
  return undefined;
}

export function toTyped(t: ParityTensor): Float32Array | BigInt64Array {
  return t.dtype === 'int64' ? BigInt64Array.from(t.data, (v) => BigInt(v)) : Float32Array.from(t.data);
}

export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}
