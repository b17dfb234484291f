import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { DeqError } from '../errors.js';
import { TensorPipeline } from '../pipelines/tensor.js';
import { DeqModel, modelInputs, type SessionConfig } from '../runtime/index.js';
import { STOP_REASONS, type SolverOptions } from '../solver/index.js';
import { reportFallbacks } from './fallbacks.js';
import { fromNested, parseNpy, type NdArray } from './npy.js';

/**
 * `deq-serve run`: one inference from a .json or .npy file, printed as JSON.
 * JSON files hold `{ "input": [...], "targets"?: [...] }`, a bare array, or, for
 * models with several inputs, `{ "inputs": { "<name>": [...], ... } }` (as /predict).
 */
export async function runFile(dir: string, inputFile: string, session: Partial<SessionConfig>, solver: Partial<SolverOptions>): Promise<number> {
  const model = await DeqModel.load(dir, session);
  reportFallbacks(model);
  try {
    const read = await readInput(inputFile);
    if ('named' in read) return await runNamed(model, read.named, solver);
    const { targets } = read;
    const spec = modelInputs(model.manifest)[0];
    const input = flatAsOneSample(read.input, spec.shape);
    const batched = input.shape.length === spec.shape.length + 1;
    if (!batched && input.shape.length !== spec.shape.length) {
      const count = fixedCount(spec.shape);
      throw new DeqError('DEQ_ERR_INVALID_INPUT', `${inputFile}: input has shape [${input.shape}]; the model takes [${spec.shape}] per sample, optionally with a leading batch dimension${count === undefined ? '' : `, or one sample as a flat array of ${count} values`}`);
    }
    const batch = batched ? input.shape[0] : 1;
    const perSample = batched ? input.shape.slice(1) : input.shape;
    const symbolic = spec.shape.indexOf(-1);
    const length = symbolic >= 0 ? perSample[symbolic] : undefined;
    const headInputs: Record<string, BigInt64Array> = {};
    if (targets) headInputs.targets = toInt64(targets);
    const res = await model.infer({
      input: spec.dtype === 'int64' ? toInt64(input) : Float32Array.from(input.data as Float64Array),
      batch,
      length,
      headInputs,
      solver,
    });
    const outputs = Object.fromEntries(Object.entries(res.outputs).map(([k, t]) => [k, { dims: t.dims, data: Array.from(t.data, Number) }]));
    const stats = Array.from({ length: batch }, (_, i) => ({
      iterations: res.solver.iterations[i],
      residual: res.solver.residual[i],
      converged: res.solver.converged[i] === 1,
      diverged: res.solver.diverged[i] === 1,
      stop_reason: STOP_REASONS[res.solver.end[i]],
    }));
    process.stdout.write(JSON.stringify({ model: model.name, outputs, solver: { method: res.options.method, tol: res.options.tol, stop_mode: res.options.stopMode, max_iter: res.options.maxIter, samples: stats }, timing: timingJson(res.timing) }, null, 2) + '\n');
    return 0;
  } finally {
    await model.release();
  }
}

/** Several named inputs, through the tensor pipeline /predict uses. */
async function runNamed(model: DeqModel, named: Record<string, unknown>, solver: Partial<SolverOptions>): Promise<number> {
  const res = await new TensorPipeline(model).predict(named, { solver });
  const outputs = res.outputs;
  const samples = Array.from({ length: res.solver.iterations.length }, (_, i) => ({
    iterations: res.solver.iterations[i], residual: res.solver.residual[i], converged: res.solver.converged[i] === 1, diverged: res.solver.diverged[i] === 1,
  }));
  process.stdout.write(JSON.stringify({ model: model.name, outputs, solver: { method: res.options.method, tol: res.options.tol, stop_mode: res.options.stopMode, max_iter: res.options.maxIter, samples }, timing: timingJson(res.timing) }, null, 2) + '\n');
  return 0;
}

async function readInput(file: string): Promise<{ input: NdArray; targets?: NdArray } | { named: Record<string, unknown> }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `--input ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  if (extname(file) === '.npy') return { input: parseNpy(bytes, file) };
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new DeqError('DEQ_ERR_INVALID_INPUT', `${file}: not valid JSON (${(err as Error).message})`);
  }
  if (Array.isArray(json)) return { input: fromNested(json, file) };
  const obj = json as { input?: unknown; targets?: unknown; inputs?: unknown };
  if (obj && typeof obj.inputs === 'object' && obj.inputs !== null && !Array.isArray(obj.inputs)) return { named: obj.inputs as Record<string, unknown> };
  if (!obj || obj.input === undefined) throw new DeqError('DEQ_ERR_INVALID_INPUT', `${file}: expected an array, { "input": [...] } or { "inputs": { "<name>": [...] } }`);
  return {
    input: fromNested(obj.input, `${file}: input`),
    targets: obj.targets === undefined ? undefined : fromNested(obj.targets, `${file}: targets`),
  };
}

/** Values in one sample of a fixed-shape input; undefined when a dimension is symbolic (-1). */
function fixedCount(shape: readonly number[]): number | undefined {
  return shape.some((d) => d < 0) ? undefined : shape.reduce((a, d) => a * d, 1);
}

/**
 * A flat array holding exactly one sample's values, for an input of higher rank ([1, 8, 8], a
 * flattened image or a [1, n] vector), is that sample: people write vectors as flat lists.
 */
function flatAsOneSample(input: NdArray, shape: readonly number[]): NdArray {
  if (input.shape.length !== 1 || shape.length < 2 || input.shape[0] !== fixedCount(shape)) return input;
  return { ...input, shape: [...shape] };
}

function toInt64(a: NdArray): BigInt64Array {
  if (a.data instanceof BigInt64Array) return a.data;
  return BigInt64Array.from(a.data, (v) => {
    if (!Number.isInteger(v)) throw new DeqError('DEQ_ERR_INVALID_INPUT', `token ids must be integers (got ${v})`);
    return BigInt(v);
  });
}

/** Timings as every machine-readable output of deq-serve spells them: snake_case, in ms. */
function timingJson(t: { injectMs: number; solveMs: number; cellMs: number; headMs: number; totalMs: number }): Record<string, number> {
  return { inject_ms: t.injectMs, solve_ms: t.solveMs, cell_ms: t.cellMs, head_ms: t.headMs, total_ms: t.totalMs };
}
