// DeqModel.infer with the solver's state on the cell's provider (solverPlacement 'device'):
// prepare with the device-output inject → solveOnDevice with solver graphs per state shape,
// loaded on first use → finish.
import type { DeqModel } from './deq-model.js';
import { checkDeviceOptions, DeviceSolverGraphs, solveOnDevice } from './device-solve.js';
import type { InferRequest, InferResult } from './infer-types.js';
import type { DeviceParts } from './model-graphs.js';
import type { Tensor } from './onnx.js';
import { prepareRequest } from './prepare-request.js';

/** Runs `model` on a batch with its device sessions (`device`). */
export async function inferOnDevice(model: DeqModel, device: DeviceParts, req: InferRequest): Promise<InferResult> {
  const t0 = performance.now();
  const prep = await prepareRequest(model.manifest, model.solverDefaults, req, device.inject);
  checkDeviceOptions(prep.options);
  const tail = prep.stateDims.slice(1), key = `${tail.join('x')}:${prep.options.history}`;
  let graphs = device.solvers.get(key);
  if (!graphs) {
    graphs = DeviceSolverGraphs.load(tail, prep.options.history, device.config);
    device.solvers.set(key, graphs);
    graphs.catch(() => device.solvers.delete(key));
  }
  const spec = model.manifest.graphs.cell;
  const args: Record<string, Tensor> = {};
  spec.inputs.slice(1).forEach((t, a) => { args[t.name] = prep.cellArgs[a]; });
  const t1 = performance.now();
  const options = { ...prep.options, onIteration: req.onIteration && ((i: number, it: number, r: number) => req.onIteration!(i, it, r, -1)) };
  const solved = await solveOnDevice({ graph: device.cell, z: spec.inputs[0].name, out: spec.outputs[0].name, args }, await graphs, prep.stateDims, options, req.z0);
  const t2 = performance.now();
  const outputs = await model.finish(prep, solved.z, req.outputs);
  const t3 = performance.now();
  return {
    outputs,
    ...(req.returnState ? { state: { type: 'float32' as const, data: solved.z, dims: prep.stateDims } } : {}),
    solver: solved.result,
    options: prep.options,
    timing: { injectMs: t1 - t0, solveMs: t2 - t1, cellMs: solved.cellMs, headMs: t3 - t2, totalMs: t3 - t0 },
  };
}
