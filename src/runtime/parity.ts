import type { ParityCase, ParityTensor } from './bundle.js';
import type { SolverOptions } from '../solver/index.js';
import type { DeqModel } from './deq-model.js';

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
  converged: boolean;
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
 * `deq-serve inspect --solver …` asks), and compares outputs.
 */
export async function checkParity(model: DeqModel, overrides: Partial<SolverOptions> = {}): Promise<ParityReport> {
  const parity = model.bundle.parity;
  const atol = model.manifest.parity?.atol ?? 1e-3;
  if (!parity) return { atol, passed: false, maxDeviation: NaN, cases: [] };
  const floatOutputs = new Set(model.manifest.graphs.head.outputs.filter((o) => o.dtype === 'float32').map((o) => o.name));
  const logits = model.manifest.task === 'image-classification' ? model.manifest.outputs.logits : undefined;
  const cases: ParityCaseReport[] = [];
  for (const [index, c] of parity.cases.entries()) {
    const names = Object.keys(c.outputs).filter((k) => floatOutputs.has(k));
    const res = await model.infer({
      input: toTyped(c.input),
      batch: 1,
      length: symbolicLength(model, c),
      headInputs: c.extra_inputs ? Object.fromEntries(Object.entries(c.extra_inputs).map(([k, t]) => [k, toTyped(t)])) : undefined,
      outputs: names,
      solver: {
        method: parity.solver.method,
        tol: parity.solver.tol,
        stopMode: parity.solver.stop_mode,
        maxIter: parity.solver.max_iter,
        history: parity.solver.history ?? model.solverDefaults.history,
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
    };
    if (logits && c.outputs[logits]) report.argmaxMatch = argmax(res.outputs[logits].data as Float32Array) === argmax(c.outputs[logits]);
    cases.push(report);
  }
  const maxDeviation = Math.max(0, ...cases.map((c) => c.maxDeviation));
  const passed = cases.length > 0 && maxDeviation <= atol && cases.every((c) => c.argmaxMatch !== false);
  return { atol, passed, maxDeviation, cases };
}

function symbolicLength(model: DeqModel, c: ParityCase): number | undefined {
  const shape = model.manifest.graphs.inject.inputs[0].shape;
  const i = shape.indexOf(-1);
  return i < 0 ? undefined : c.input.shape[i];
}

function toTyped(t: ParityTensor): Float32Array | BigInt64Array {
  return t.dtype === 'int64' ? BigInt64Array.from(t.data, (v) => BigInt(v)) : Float32Array.from(t.data);
}

export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}
