// The first phase of an inference (DeqModel.prepare): a request's inputs checked against
// the manifest, its solver settings resolved, and the inject graph run; and what the
// scheduler sees of the result (DeqModel.plan): its SolvePlan, with the key of the solves it can share.
import { DeqError } from '../errors.js';
import type { ResolvedSolverOptions } from '../solver/index.js';
import type { CellPadding } from './cell-batch.js';
import type { InferRequest, Prepared } from './infer-types.js';
import { modelInputs, modelOutputs, type Manifest } from './manifest.js';
import { createTensor, type OnnxGraph, type Tensor } from './onnx.js';
import type { PreparedRef, SolvePlan } from './solve-plan.js';
import { requestSolverOptions } from './solver-settings.js';

/** A declared shape with its symbolic (-1) dimensions set to `length`; DEQ_ERR_INVALID_INPUT without one. */
export function resolveDims(shape: readonly number[], length: number | undefined): number[] {
  return shape.map((d) => {
    if (d !== -1) return d;
    if (length === undefined || !Number.isInteger(length) || length < 1) throw new DeqError('DEQ_ERR_INVALID_INPUT', 'this model needs a sequence length');
    return length;
  });
}

/** Checks a request and runs `injectGraph` (the host one, or a device-output one) on its inputs. */
export async function prepareRequest(m: Manifest, defaults: ResolvedSolverOptions, req: InferRequest, injectGraph: OnnxGraph | undefined): Promise<Prepared> {
  const { batch } = req;
  if (!Number.isInteger(batch) || batch < 1) throw new DeqError('DEQ_ERR_INVALID_INPUT', `batch must be a positive integer (got ${batch})`);
  const options = requestSolverOptions(m, req.solver, defaults);
  const available = modelOutputs(m).map((o) => o.name);
  for (const name of req.outputs ?? []) {
    if (!available.includes(name)) throw new DeqError('DEQ_ERR_INVALID_INPUT', `unknown output "${name}" (model has ${available.join(', ')})`);
  }
  const feeds = modelFeeds(m, req);
  if (req.z0) {
    const want = batch * resolveDims(m.state.shape, req.length).reduce((a, b) => a * b, 1);
    if (!(req.z0 instanceof Float32Array) || req.z0.length !== want) throw new DeqError('DEQ_ERR_INVALID_INPUT', `the initial state must be float32 with ${want} values (batch × state), got ${req.z0.length}`);
  }
  const inject = m.graphs.inject;
  // The cell's inputs after z: inject's outputs, or (no inject graph) the raw inputs.
  let cellArgs: Record<string, Tensor> = feeds;
  if (inject) {
    const fetches: Record<string, null> = {};
    for (const o of inject.outputs) fetches[o.name] = null;
    const injectFeeds: Record<string, Tensor> = {};
    for (const t of inject.inputs) injectFeeds[t.name] = feeds[t.name];
    cellArgs = await injectGraph!.run(injectFeeds, fetches);
  }
  const stateDims = [batch, ...resolveDims(m.state.shape, req.length)];
  const prep: Omit<Prepared, keyof PreparedRef> = {
    batch, length: req.length, feeds, options, stateDims,
    n: stateDims.slice(1).reduce((a, b) => a * b, 1),
    cellArgs: m.graphs.cell.inputs.slice(1).map((spec) => cellArgs[spec.name]),
  };
  return prep as Prepared; // PreparedRef's brand is a type, nothing to set
}

/** What the scheduler sees of `prep`, solved with `kernel` at `padding` (DeqModel.cellPadding): its SolvePlan. */
export function planSolve(prep: Prepared, kernel: string, padding: CellPadding | undefined): SolvePlan {
  const { batch, length, n, stateDims, options } = prep;
  return { batch, length, n, stateDims, options, key: groupKey(prep, kernel, padding), padding, prepared: prep };
}

// Requests share a solve when everything but the per-row settings agrees: method and its
// parameters, history, kernel, and the shapes of the state and of the cell's inputs (for a
// padded model, at the padded length: windows of different lengths in one bucket share).
function groupKey(prep: Prepared, kernel: string, padding: CellPadding | undefined): string {
  const o = prep.options;
  const dims = (d: readonly number[], padded: boolean) => (padding && padded ? [padding.length, ...d.slice(2)] : d.slice(1)).join('x');
  return [
    o.method, o.history, o.lineSearch, o.andersonLambda, o.andersonBeta, o.damping, o.divergenceFactor, o.restartFactor, kernel,
    dims(prep.stateDims, true), ...prep.cellArgs.map((t, a) => `${t.type}[${dims(t.dims, padding?.args[a] === true)}]`),
  ].join('|');
}

// Every model input as an ORT tensor, checked against the manifest: name, dtype, size.
function modelFeeds(m: Manifest, req: InferRequest): Record<string, Tensor> {
  const specs = modelInputs(m);
  const given: Record<string, Float32Array | BigInt64Array | undefined> = { ...req.headInputs, ...req.inputs };
  if (req.input) given[specs[0].name] = req.input;
  const feeds: Record<string, Tensor> = {};
  for (const spec of specs) {
    const data = given[spec.name];
    if (!data) throw new DeqError('DEQ_ERR_INVALID_INPUT', `input "${spec.name}" is required`);
    const dims = [req.batch, ...resolveDims(spec.shape, req.length)];
    const expected = dims.reduce((a, b) => a * b, 1);
    if (data.length !== expected) throw new DeqError('DEQ_ERR_INVALID_INPUT', `input "${spec.name}" has ${data.length} values, expected ${expected} for shape [${dims.join(', ')}]`);
    const wantType = spec.dtype === 'int64' ? BigInt64Array : Float32Array;
    if (!(data instanceof wantType)) throw new DeqError('DEQ_ERR_INVALID_INPUT', `input "${spec.name}" must be ${spec.dtype}`);
    feeds[spec.name] = createTensor(spec.dtype, data, dims);
  }
  return feeds;
}
