// A Broyden solve whose vectors stay where the cell runs (solverPlacement 'device'). Each
// iteration runs three graphs on the model's provider: the cell, measure (g = f(z) − z and
// three sums per sample, the only values read back) and the Broyden step
// (runtime/device-broyden-graphs.ts). The per-sample decisions are the host solver's
// (src/solver/session.ts): the same residuals, tolerances, caps, divergence test, restart
// guard and lowest-residual iterate, so the answers match a host solve up to float32 rounding.
import { DeqError } from '../errors.js';
import { RowEnd, type ResolvedSolverOptions, type SolveResult } from '../solver/index.js';
import { MODE, STEP_STATE, measureGraph, readbackGraph, stepGraph, type StepState } from './device-broyden-graphs.js';
import { createTensor, OnnxGraph, type SessionConfig, type Tensor } from './onnx.js';

/** The graphs a device solve runs besides the cell, built for one state shape and history size. */
export class DeviceSolverGraphs {
  readonly measure: OnnxGraph;
  readonly step: OnnxGraph;
  readonly readback: OnnxGraph;
  readonly history: number;

  private constructor(measure: OnnxGraph, step: OnnxGraph, readback: OnnxGraph, history: number) {
    this.measure = measure;
    this.step = step;
    this.readback = readback;
    this.history = history;
  }

  /** Builds and opens them on `config`'s provider; every output but the read-back ones stays on the device. */
  static async load(tail: readonly number[], history: number, config: SessionConfig): Promise<DeviceSolverGraphs> {
    const opened: OnnxGraph[] = [];
    try {
      const open = async (bytes: Uint8Array, label: string, device: readonly string[]) => {
        const g = await OnnxGraph.load(bytes, label, config, { deviceOutputs: device });
        opened.push(g);
        return g;
      };
      const measure = await open(measureGraph(tail), 'device solver: measure', ['g']);
      const step = await open(stepGraph(tail, history), 'device solver: broyden step', STEP_STATE.map((s) => `${s}_out`));
      const readback = await open(readbackGraph(tail), 'device solver: readback', []);
      return new DeviceSolverGraphs(measure, step, readback, history);
    } catch (err) {
      await Promise.allSettled(opened.map((g) => g.release()));
      throw err;
    }
  }

  async release(): Promise<void> {
    await Promise.allSettled([this.measure.release(), this.step.release(), this.readback.release()]);
  }
}

/** Which solver options a device solve can run; throws DEQ_ERR_INVALID_SOLVER_OPTION naming the one it cannot. */
export function checkDeviceOptions(o: ResolvedSolverOptions): void {
  if (o.method !== 'broyden') throw new DeqError('DEQ_ERR_INVALID_SOLVER_OPTION', `solver placement "device" runs method "broyden" only (got "${o.method}"); use placement "host" for it`);
  if (o.lineSearch) throw new DeqError('DEQ_ERR_INVALID_SOLVER_OPTION', 'solver placement "device" has no line search (lineSearch: true); use placement "host" for it');
  if (o.patience > 0) throw new DeqError('DEQ_ERR_INVALID_SOLVER_OPTION', 'solver placement "device" does not label its iterates, so it cannot stop on a stable prediction (patience); use placement "host" for it');
}

export interface DeviceSolve {
  /** The lowest-residual iterate per sample, batch × n (on the host). */
  z: Float32Array;
  result: SolveResult;
  /** Time inside cell runs. */
  cellMs: number;
}

/** The cell as the device solve sees it: its graph, input and output names, and its other inputs. */
export interface DeviceCell {
  graph: OnnxGraph;
  z: string;
  out: string;
  args: Record<string, Tensor>;
}

/**
 * Solves z* = f(z*) for every sample of the batch from z₀ (zeros when left out) with
 * limited-memory Broyden, its state on the cell's provider. `stateDims` is [batch, …state shape].
 * `opts.onIteration` hears each sample's residual per iteration, with no label (−1).
 */
export async function solveOnDevice(cell: DeviceCell, graphs: DeviceSolverGraphs, stateDims: readonly number[], opts: ResolvedSolverOptions, z0?: Float32Array): Promise<DeviceSolve> {
  checkDeviceOptions(opts);
  const batch = stateDims[0], n = stateDims.slice(1).reduce((a, b) => a * b, 1), m = graphs.history;
  if (opts.history !== m) throw new RangeError(`device solver graphs are for history ${m}, options ask for ${opts.history}`);
  const dims = stateDims.slice();
  const zeros = (d: readonly number[]) => createTensor('float32', new Float32Array(d.reduce((a, b) => a * b, 1)), d);
  const slot = new Float32Array(batch * m);
  for (let i = 0; i < batch; i++) slot[i * m] = 1;
  if (z0 && z0.length !== batch * n) throw new RangeError(`z0 has ${z0.length} values, expected batch × n = ${batch * n}`);
  // The best iterate starts at z₀, as the host solver's does (SolveSession.admit).
  const start = () => (z0 ? createTensor('float32', Float32Array.from(z0), dims) : zeros(dims));
  const state: Record<StepState, Tensor> = {
    z: start(), z_prev: zeros(dims), g_prev: zeros(dims), z_best: start(),
    u_hist: zeros([batch, m, n]), v_hist: zeros([batch, m, n]),
    slot: createTensor('float32', slot, [batch, m]), valid: zeros([batch, m]),
  };
  const mode = new Float32Array(batch), improve = new Float32Array(batch);
  const modeT = createTensor('float32', mode, [batch, 1]), improveT = createTensor('float32', improve, [batch, 1]);

  const iterations = new Int32Array(batch), residual = new Float64Array(batch).fill(Infinity);
  const converged = new Uint8Array(batch), diverged = new Uint8Array(batch), active = new Uint8Array(batch).fill(1);
  const ends = new Uint8Array(batch); // RowEnd: 0 while running (or stopped from outside)
  const tol = new Float64Array(batch), maxIter = new Int32Array(batch), abs0 = new Float64Array(batch);
  const first = new Uint8Array(batch).fill(1), restarting = new Uint8Array(batch);
  for (let i = 0; i < batch; i++) {
    tol[i] = opts.sampleTol ? opts.sampleTol[i] : opts.tol;
    maxIter[i] = opts.sampleMaxIter ? opts.sampleMaxIter[i] : opts.maxIter;
  }
  const rel = opts.stopMode === 'rel';
  const trace = opts.trace ? Array.from({ length: batch }, (_, i) => new Float64Array(maxIter[i])) : null;

  // Feeds and fetches built once: each iteration only swaps the tensors in them.
  const cellFeeds: Record<string, Tensor> = { ...cell.args, [cell.z]: state.z };
  const cellFetch = { [cell.out]: null };
  const measureFeeds: Record<string, Tensor> = { z: state.z, fz: state.z };
  const measureFetch = { g: null, norms: null };
  const stepFeeds: Record<string, Tensor> = { ...state, g: state.z, mode: modeT, improve: improveT };
  const stepFetch = Object.fromEntries(STEP_STATE.map((s) => [`${s}_out`, null]));
  const outName = Object.fromEntries(STEP_STATE.map((s) => [s, `${s}_out`])) as Record<StepState, string>;
  let calls = 0, cellMs = 0, running = batch, stopped = false;
  while (running > 0) {
    if (calls > 0 && opts.shouldStop?.()) { stopped = true; break; }
    const t0 = performance.now();
    cellFeeds[cell.z] = state.z;
    const fz = (await cell.graph.run(cellFeeds, cellFetch))[cell.out];
    cellMs += performance.now() - t0;
    measureFeeds.z = state.z;
    measureFeeds.fz = fz;
    const measured = await graphs.measure.run(measureFeeds, measureFetch);
    const norms = measured.norms.data as Float32Array;
    calls++;
    for (let i = 0; i < batch; i++) {
      improve[i] = 0;
      mode[i] = MODE.frozen;
      if (!active[i]) continue;
      const o = 3 * i;
      // The last step left a non-finite z: the host solver ends such a row at the step, uncounted.
      if (norms[o + 2] !== 0) { end(i, RowEnd.Diverged); continue; }
      const it = ++iterations[i];
      const abs = Math.sqrt(norms[o]);
      const r = rel ? abs / (Math.sqrt(norms[o + 1]) + 1e-9) : abs;
      if (trace) trace[i][it - 1] = r;
      opts.onIteration?.(i, it, r, -1);
      if (!Number.isFinite(r)) { end(i, RowEnd.Diverged); continue; }
      if (it === 1) abs0[i] = abs;
      if (r < residual[i]) { residual[i] = r; improve[i] = 1; }
      if (r < tol[i]) { end(i, RowEnd.Converged); continue; }
      if (abs > opts.divergenceFactor * Math.max(abs0[i], 1e-12)) { end(i, RowEnd.Diverged); continue; }
      if (it >= maxIter[i]) { end(i, RowEnd.Capped); continue; }
      const start = first[i] === 1 || restarting[i] === 1;
      first[i] = 0;
      const wasRestarting = restarting[i] === 1;
      restarting[i] = 0;
      if (!start && !wasRestarting && r > opts.restartFactor * residual[i]) {
        // Climbing away from the best point: back to it, history cleared (src/solver/session.ts).
        restarting[i] = 1;
        mode[i] = MODE.restart;
        continue;
      }
      mode[i] = start ? MODE.start : MODE.next;
    }
    for (const s of STEP_STATE) stepFeeds[s] = state[s];
    stepFeeds.g = measured.g;
    const next = await graphs.step.run(stepFeeds, stepFetch);
    for (const s of STEP_STATE) state[s] = next[outName[s]];
  }
  const z = (await graphs.readback.run({ x: state.z_best }, { y: null })).y.data as Float32Array;
  const result: SolveResult = { iterations, residual, converged, diverged, end: ends, calls, stopped };
  if (trace) result.trace = trace.map((t, i) => t.slice(0, iterations[i]));
  return { z, result, cellMs };

  function end(i: number, how: RowEnd): void {
    active[i] = 0;
    running--;
    ends[i] = how;
    if (how === RowEnd.Converged) converged[i] = 1;
    if (how === RowEnd.Diverged) diverged[i] = 1;
  }
}
