import { DeqError } from '../errors.js';
import { kernelForPrecision, resolveSolverOptions, solve, SolverWorkspace, type ResolvedSolverOptions, type SolveResult, type SolverKernel, type SolverOptions } from '../solver/index.js';
import { loadBundle, type Bundle, type GraphRole } from './bundle.js';
import { modelInputs, modelOutputs, stateOutputs, type Manifest, type TensorSpec } from './manifest.js';
import { CellBatch, padLength, type CellPadding } from './cell-batch.js';
import { IterateLabeler } from './iterate-labels.js';
import { createTensor, DEFAULT_SESSION_CONFIG, OnnxGraph, type SessionConfig, type Tensor } from './onnx.js';
import { checkDeviceOptions, DeviceSolverGraphs, solveOnDevice } from './device-solve.js';
import { warmUpModel, type WarmUpOptions, type WarmUpReport } from './warm-up.js';

/** A dense tensor as it crosses the runtime boundary. */
export interface TensorValue {
  type: 'float32' | 'int64';
  data: Float32Array | BigInt64Array;
  dims: number[];
}

export interface InferRequest {
  /** Batched model input, row-major: batch × per-sample input shape (the first model input). */
  input?: Float32Array | BigInt64Array;
  /** Every model input by name (see modelInputs), row-major, batch first. */
  inputs?: Record<string, Float32Array | BigInt64Array>;
  batch: number;
  /** Length of the symbolic (-1) input dimension, e.g. sequence length. */
  length?: number;
  /** Extra head inputs by name (language models: `targets`, batch × length int64). */
  headInputs?: Record<string, Float32Array | BigInt64Array>;
  /** Outputs to fetch (head outputs, or state slices without a head); defaults to every output role in the manifest. */
  outputs?: readonly string[];
  /** Overrides of the manifest's solver defaults for this call. */
  solver?: Partial<SolverOptions>;
  /** Also return the fixed point z* (batch × state), e.g. to compare solves. */
  returnState?: boolean;
  /**
   * Warm start: the solve's initial state z₀ (batch × state, the request's length), instead of
   * zeros. Only where the solve starts changes: each sample still stops on its own rule.
   */
  z0?: Float32Array;
  /**
   * Called after each iteration for every sample evaluated in it (SolverOptions.onIteration): a
   * classifier's label is its top-1, and `top` its most probable classes (views, valid during the call).
   */
  onIteration?: IterationHook;
}

/** What DeqModel and the scheduler report after each iteration of a watched sample. */
export type IterationHook = (sample: number, iteration: number, residual: number, label: number, top?: { classes: Int32Array; probabilities: Float32Array }) => void;

/** Why a model cannot label its iterates (early exit, label trace), or null when it can. */
export function labelingUnsupported(m: Manifest): string | null {
  const head = m.graphs.head;
  if (!head || !m.outputs.logits) return `${m.name} has no classifier head (manifest.outputs.logits)`;
  if (head.inputs.length !== 1 || m.state.shape.includes(-1)) return `${m.name}'s head reads more than a fixed-size z`;
  return null;
}

export interface InferTiming {
  injectMs: number;
  /** Whole solve, ONNX cell runs included. */
  solveMs: number;
  /** Time inside cell runs during the solve; solveMs − cellMs is solver overhead. */
  cellMs: number;
  headMs: number;
  totalMs: number;
}

export interface InferResult {
  outputs: Record<string, TensorValue>;
  /** z* per sample, when the request asked for it (`returnState`). */
  state?: TensorValue;
  solver: SolveResult;
  options: ResolvedSolverOptions;
  timing: InferTiming;
}

/** A request after its injection: every input, the cell's inputs after z, the state layout and the solver options. */
export interface Prepared {
  batch: number;
  length?: number;
  /** Every model input (head extras included) as a tensor. */
  feeds: Record<string, Tensor>;
  /** The cell's inputs after z, batch-first, in the cell graph's order. */
  cellArgs: Tensor[];
  stateDims: number[];
  /** Values per sample of the state. */
  n: number;
  options: ResolvedSolverOptions;
}

/** The open graphs: the cell always, inject and head when the bundle has them. */
type Graphs = Partial<Record<GraphRole, OnnxGraph>> & { cell: OnnxGraph };

/**
 * Where the solver's vectors live. `host` (the default): the TypeScript solver, each
 * iteration's state copied to the provider and back. `device`: Broyden's vector work as
 * ONNX graphs on the cell's provider, state kept there (runtime/device-solve.ts; docs/gpu.md
 * has when it pays). Used by infer(); the continuous-batching scheduler always solves on the host.
 */
export type SolverPlacement = 'host' | 'device';
export const SOLVER_PLACEMENTS: readonly SolverPlacement[] = Object.freeze(['host', 'device']);

/** How DeqModel.load sets a model up, beyond its ONNX sessions (SessionConfig). Fixed for the model's life. */
export interface ModelOptions {
  solverPlacement?: SolverPlacement;
  /**
   * Where the solver's row algebra runs: `wasm` (SIMD kernels in float64), `wasm-f32`
   * (float32 SIMD kernels) or `js` (the scalar reference). Default: the fastest kernel for
   * the manifest's `solver.precision` (`wasm-f32` for `"float32"`, else `wasm`; `js` when
   * the wasm kernels do not load). docs/solver.md has the measurements.
   */
  solverKernel?: SolverKernel;
}

/** Sessions of a device-placed model: inject and cell with their outputs on the device, solver graphs per state shape. */
interface DeviceParts {
  config: SessionConfig;
  inject?: OnnxGraph;
  cell: OnnxGraph;
  solvers: Map<string, Promise<DeviceSolverGraphs>>;
}

/**
 * A loaded DEQ: inject → solve(cell) → head over a batch, on ONNX Runtime.
 * Safe to call concurrently; each call takes its own solver workspace.
 */
export class DeqModel {
  readonly bundle: Bundle;
  readonly manifest: Manifest;
  readonly provider: string;
  readonly #graphs: Graphs;
  readonly #defaults: ResolvedSolverOptions;
  readonly #freeWorkspaces = new Map<string, SolverWorkspace[]>();
  /** Idle CellBatches of infer(), by batch and shape: four buffers of batch × state each, too many to allocate per request. */
  readonly #freeCells = new Map<string, CellBatch[]>();
  readonly #device: DeviceParts | null;
  /** Idle IterateLabelers of infer(), by batch. */
  readonly #freeLabelers = new Map<string, IterateLabeler[]>();
  readonly #solverKernel: SolverKernel;

  private constructor(bundle: Bundle, graphs: Graphs, device: DeviceParts | null, kernel: SolverKernel | undefined) {
    this.#device = device;
    this.bundle = bundle;
    this.manifest = bundle.manifest;
    this.#graphs = graphs;
    this.provider = graphs.cell.provider;
    this.#defaults = solverDefaults(bundle.manifest);
    this.#solverKernel = kernel ?? kernelForPrecision(bundle.manifest.solver.precision ?? 'float64');
  }

  /** Loads and verifies a bundle folder, then opens its three graphs. Nothing stays open on failure. */
  static async load(dir: string, session: Partial<SessionConfig> = {}, options: ModelOptions = {}): Promise<DeqModel> {
    return DeqModel.fromBundle(await loadBundle(dir), session, options);
  }

  static async fromBundle(bundle: Bundle, session: Partial<SessionConfig> = {}, options: ModelOptions = {}): Promise<DeqModel> {
    const config: SessionConfig = { ...DEFAULT_SESSION_CONFIG, ...session };
    const opened: OnnxGraph[] = [];
    try {
      const graphs = {} as Graphs;
      for (const role of ['inject', 'cell', 'head'] as const) {
        const bytes = bundle.graphs[role], spec = bundle.manifest.graphs[role];
        if (!bytes || !spec) continue;
        const g = await OnnxGraph.load(bytes, spec.file, config);
        opened.push(g);
        checkGraph(bundle.manifest, role, g);
        graphs[role] = g;
      }
      let device: DeviceParts | null = null;
      if (options.solverPlacement === 'device') {
        const m = bundle.manifest;
        const open = async (role: 'inject' | 'cell') => {
          const g = await OnnxGraph.load(bundle.graphs[role]!, `${m.graphs[role]!.file} (device outputs)`, config, { deviceOutputs: m.graphs[role]!.outputs.map((o) => o.name) });
          opened.push(g);
          return g;
        };
        device = { config, inject: m.graphs.inject ? await open('inject') : undefined, cell: await open('cell'), solvers: new Map() };
      }
      return new DeqModel(bundle, graphs, device, options.solverKernel);
    } catch (err) {
      await Promise.allSettled(opened.map((g) => g.release()));
      throw err;
    }
  }

  get name(): string {
    return this.manifest.name;
  }

  /** The manifest's solver defaults, resolved. */
  get solverDefaults(): ResolvedSolverOptions {
    return this.#defaults;
  }

  /**
   * Why each preferred provider before the one in use could not load (empty when the first
   * loaded). A fallback is never silent: the CLI and the server report these.
   */
  get providerFallbacks(): readonly string[] {
    return this.#graphs.cell.fallbacks;
  }

  get solverPlacement(): SolverPlacement {
    return this.#device ? 'device' : 'host';
  }

  /** Where the solver's row algebra runs (ModelOptions.solverKernel), fixed at load. */
  get solverKernel(): SolverKernel {
    return this.#solverKernel;
  }

  /** Runs the model on a batch: prepare (inject) → solve over the cell → finish (head). */
  async infer(req: InferRequest): Promise<InferResult> {
    if (this.#device) return this.#inferOnDevice(req, this.#device);
    const t0 = performance.now();
    const prep = await this.prepare(req);
    const { batch, n } = prep;
    const t1 = performance.now();
    const cellsKey = cellsShapeKey(prep, batch);
    const cells = this.#freeCells.get(cellsKey)?.pop() ?? this.cellBatch(prep, batch);
    for (let i = 0; i < batch; i++) cells.setRow(i, prep.cellArgs, i);
    const cellMs0 = cells.elapsed;
    const z = req.z0 ? Float32Array.from(req.z0) : new Float32Array(batch * n);
    const ws = this.#takeWorkspace(prep.options, batch, n);
    const o = prep.options;
    // The head labels iterates only when the request needs it: early exit, or a trace of a classifier.
    const labeler = o.patience > 0 || ((o.trace || req.onIteration) && this.canLabel) ? this.#freeLabelers.get(String(batch))?.pop() ?? this.labeler(prep, batch) : undefined;
    let result: SolveResult;
    try {
      const options = {
        ...o,
        onIteration: req.onIteration && ((i: number, it: number, r: number, label: number) => req.onIteration!(i, it, r, label, label >= 0 ? labeler?.topK(i) : undefined)),
        ...(labeler ? { predict: (zz: Float32Array, want: Uint8Array, labels: Int32Array, margins: Float64Array) => labeler.run(zz, want, labels, margins) } : {}),
      };
      result = await solve((zz, out, active) => cells.run(zz, out, active), batch, n, z, options, ws);
    } finally {
      this.#returnWorkspace(ws);
      keepSpare(this.#freeCells, cellsKey, cells);
      if (labeler) keepSpare(this.#freeLabelers, String(batch), labeler);
    }
    const cellMs = cells.elapsed - cellMs0;
    const t2 = performance.now();
    const outputs = await this.finish(prep, z, req.outputs);
    const t3 = performance.now();
    return {
      outputs,
      ...(req.returnState ? { state: { type: 'float32' as const, data: z, dims: prep.stateDims } } : {}),
      solver: result,
      options: prep.options,
      timing: { injectMs: t1 - t0, solveMs: t2 - t1, cellMs, headMs: t3 - t2, totalMs: t3 - t0 },
    };
  }

  /**
   * Runs, before the model serves anything, the solves and cell runs that make ONNX Runtime
   * set up each shape it will see, so no request pays a first run: a batch-1 solve at the
   * manifest's settings and, with `maxRows`, one cell run at every row count (and padded
   * length) a batched solve can take. Answers afterwards are the same as a cold model's.
   */
  warmUp(options: WarmUpOptions = {}): Promise<WarmUpReport> {
    return warmUpModel(this, options);
  }

  /**
   * The first phase of an inference: checks the inputs, resolves the solver
   * options and runs the inject graph. What it returns is all the cell and the
   * head need later, so a scheduler can solve its rows together with others'.
   * @internal The runtime's own phases (scheduler, warm-up); use infer().
   */
  async prepare(req: InferRequest): Promise<Prepared> {
    return this.#prepareWith(req, this.#graphs.inject);
  }

  // prepare() with the inject graph given: the host one, or the device-output one of a device solve.
  async #prepareWith(req: InferRequest, injectGraph: OnnxGraph | undefined): Promise<Prepared> {
    const m = this.manifest;
    const { batch } = req;
    if (!Number.isInteger(batch) || batch < 1) throw new DeqError('DEQ_ERR_INVALID_INPUT', `batch must be a positive integer (got ${batch})`);
    let options: ResolvedSolverOptions;
    try {
      options = resolveSolverOptions(req.solver ?? {}, this.#defaults);
    } catch (err) {
      throw new DeqError('DEQ_ERR_INVALID_SOLVER_OPTION', (err as Error).message);
    }
    if (options.patience > 0) {
      const why = labelingUnsupported(m);
      if (why) throw new DeqError('DEQ_ERR_INVALID_SOLVER_OPTION', `stop_mode "prediction" needs a classifier: ${why}`);
    }
    const available = modelOutputs(m).map((o) => o.name);
    for (const name of req.outputs ?? []) {
      if (!available.includes(name)) throw new DeqError('DEQ_ERR_INVALID_INPUT', `unknown output "${name}" (model has ${available.join(', ')})`);
    }
    const feeds = this.#modelFeeds(req);
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
    return {
      batch, length: req.length, feeds, options, stateDims,
      n: stateDims.slice(1).reduce((a, b) => a * b, 1),
      cellArgs: m.graphs.cell.inputs.slice(1).map((spec) => cellArgs[spec.name]),
    };
  }

  /**
   * How a window of `length` positions is padded when it shares solves: to
   * padLength(length, context), along axis 0 of the state and of every cell input
   * whose first dim is symbolic. Undefined unless the manifest declares `state.pad`
   * (padding is exact only for a cell that is causal along that axis).
   * @internal
   */
  cellPadding(length: number | undefined): CellPadding | undefined {
    const m = this.manifest;
    if (m.state.pad !== 'right' || length === undefined) return undefined;
    return {
      length: padLength(length, m.tokenizer?.context),
      args: m.graphs.cell.inputs.slice(1).map((t) => t.shape[0] === -1),
    };
  }

  /**
   * Cell evaluation over `capacity` slots laid out for prepared requests of this
   * shape, or (with `padding`) for requests of any length up to padding.length.
   * @internal
   */
  cellBatch(prep: Prepared, capacity: number, padding?: CellPadding): CellBatch {
    const spec = this.manifest.graphs.cell;
    const padded = (dims: readonly number[], yes: boolean) => (padding && yes ? [padding.length, ...dims.slice(2)] : dims.slice(1));
    return new CellBatch(
      this.#graphs.cell,
      { z: spec.inputs[0].name, out: spec.outputs[0].name, args: spec.inputs.slice(1).map((t) => t.name) },
      capacity, padded(prep.stateDims, true),
      prep.cellArgs.map((t, a) => ({ type: t.type as 'float32' | 'int64', tail: padded(t.dims, padding?.args[a] === true) })),
      padding,
    );
  }

  /** Whether the head can label iterates (a classifier whose head reads z alone): labelingUnsupported. */
  get canLabel(): boolean {
    return labelingUnsupported(this.manifest) === null;
  }

  /** The head's top-1 on iterates of `capacity` slots laid out like `prep` (canLabel must hold). @internal */
  labeler(prep: Prepared, capacity: number): IterateLabeler {
    const head = this.manifest.graphs.head!;
    return new IterateLabeler(this.#graphs.head!, { z: head.inputs[0].name, logits: this.manifest.outputs.logits }, capacity, prep.stateDims.slice(1));
  }

  /** The last phase: the head on z* (batch × n), or slices of z* when the bundle has no head. @internal */
  async finish(prep: Prepared, z: Float32Array, outputs?: readonly string[]): Promise<Record<string, TensorValue>> {
    const m = this.manifest;
    const { batch, n, stateDims } = prep;
    const wanted = outputs ?? Object.values(m.outputs);
    const result: Record<string, TensorValue> = {};
    const head = m.graphs.head;
    if (head) {
      const feeds: Record<string, Tensor> = { [head.inputs[0].name]: createTensor('float32', z, stateDims) };
      for (const spec of head.inputs.slice(1)) feeds[spec.name] = prep.feeds[spec.name];
      const fetches: Record<string, null> = {};
      for (const name of wanted) fetches[name] = null;
      const headOut = await this.#graphs.head!.run(feeds, fetches);
      for (const name of wanted) {
        const t = headOut[name];
        result[name] = { type: t.type as TensorValue['type'], data: t.data as TensorValue['data'], dims: t.dims.slice() };
      }
    } else {
      for (const s of stateOutputs(m)) if (wanted.includes(s.name)) result[s.name] = sliceState(z, batch, n, s.offset, s.shape, stateDims);
    }
    return result;
  }

  /**
   * Whether requests prepared like `prep` can share head runs (finishTogether): the head
   * reads z alone, at a shape that does not depend on the request.
   * @internal
   */
  canShareHead(prep: Prepared): boolean {
    const head = this.manifest.graphs.head;
    return head !== undefined && head.inputs.length === 1 && prep.length === undefined;
  }

  /**
   * The head over several requests' z* in one run, so rows that stop together pay one run
   * (the head is weight-bound at batch 1: docs/server.md). Each gets its own rows back, as
   * copies. Every part must pass canShareHead and want the same outputs.
   * @internal
   */
  async finishTogether(parts: readonly { prep: Prepared; z: Float32Array }[], outputs?: readonly string[]): Promise<Record<string, TensorValue>[]> {
    if (parts.length === 1) return [await this.finish(parts[0].prep, parts[0].z, outputs)];
    const first = parts[0].prep, n = first.n;
    let total = 0;
    for (const { prep } of parts) {
      if (!this.canShareHead(prep) || prep.n !== n) throw new RangeError('finishTogether: these requests cannot share a head run');
      total += prep.batch;
    }
    const z = new Float32Array(total * n);
    for (let i = 0, row = 0; i < parts.length; row += parts[i].prep.batch, i++) z.set(parts[i].z.subarray(0, parts[i].prep.batch * n), row * n);
    const all = await this.finish({ ...first, batch: total, stateDims: [total, ...first.stateDims.slice(1)] }, z, outputs);
    const results: Record<string, TensorValue>[] = [];
    for (let i = 0, row = 0; i < parts.length; row += parts[i].prep.batch, i++) {
      const b = parts[i].prep.batch, own: Record<string, TensorValue> = {};
      for (const [name, t] of Object.entries(all)) {
        const per = t.data.length / total;
        own[name] = { type: t.type, data: t.data.slice(row * per, (row + b) * per) as TensorValue['data'], dims: [b, ...t.dims.slice(1)] };
      }
      results.push(own);
    }
    return results;
  }

  // Every model input as an ORT tensor, checked against the manifest: name, dtype, size.
  #modelFeeds(req: InferRequest): Record<string, Tensor> {
    const specs = modelInputs(this.manifest);
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

  // infer() with the solver's state on the cell's provider (solverPlacement 'device').
  async #inferOnDevice(req: InferRequest, device: DeviceParts): Promise<InferResult> {
    const t0 = performance.now();
    const prep = await this.#prepareWith(req, device.inject);
    checkDeviceOptions(prep.options);
    const tail = prep.stateDims.slice(1), key = `${tail.join('x')}:${prep.options.history}`;
    let graphs = device.solvers.get(key);
    if (!graphs) {
      graphs = DeviceSolverGraphs.load(tail, prep.options.history, device.config);
      device.solvers.set(key, graphs);
      graphs.catch(() => device.solvers.delete(key));
    }
    const spec = this.manifest.graphs.cell;
    const args: Record<string, Tensor> = {};
    spec.inputs.slice(1).forEach((t, a) => { args[t.name] = prep.cellArgs[a]; });
    const t1 = performance.now();
    const options = { ...prep.options, onIteration: req.onIteration && ((i: number, it: number, r: number) => req.onIteration!(i, it, r, -1)) };
    const solved = await solveOnDevice({ graph: device.cell, z: spec.inputs[0].name, out: spec.outputs[0].name, args }, await graphs, prep.stateDims, options, req.z0);
    const t2 = performance.now();
    const outputs = await this.finish(prep, solved.z, req.outputs);
    const t3 = performance.now();
    return {
      outputs,
      ...(req.returnState ? { state: { type: 'float32' as const, data: solved.z, dims: prep.stateDims } } : {}),
      solver: solved.result,
      options: prep.options,
      timing: { injectMs: t1 - t0, solveMs: t2 - t1, cellMs: solved.cellMs, headMs: t3 - t2, totalMs: t3 - t0 },
    };
  }

  /** Releases every native session. */
  async release(): Promise<void> {
    const device = this.#device;
    const solvers = device ? await Promise.allSettled([...device.solvers.values()]) : [];
    await Promise.allSettled([
      ...Object.values(this.#graphs).map((g) => g.release()),
      device?.inject?.release(), device?.cell.release(),
      ...solvers.map((s) => (s.status === 'fulfilled' ? s.value.release() : undefined)),
    ]);
  }

  #takeWorkspace(o: ResolvedSolverOptions, batch: number, n: number): SolverWorkspace {
    const key = `${o.method}:${batch}:${n}:${o.history}:${this.#solverKernel}`;
    return this.#freeWorkspaces.get(key)?.pop() ?? new SolverWorkspace(o.method, batch, n, o.history, this.#solverKernel);
  }

  #returnWorkspace(ws: SolverWorkspace): void {
    keepSpare(this.#freeWorkspaces, `${ws.method}:${ws.batch}:${ws.n}:${ws.history}:${ws.kernel}`, ws);
  }
}

// A few spares per shape: enough for steady traffic, bounded for odd batch sizes.
function keepSpare<T>(pool: Map<string, T[]>, key: string, item: T): void {
  const list = pool.get(key) ?? [];
  if (list.length < 2) list.push(item);
  pool.set(key, list);
}

// What decides a CellBatch's layout for infer(): batch and the per-row shapes of z and of the cell's inputs.
function cellsShapeKey(prep: Prepared, batch: number): string {
  return [batch, prep.stateDims.slice(1).join('x'), ...prep.cellArgs.map((t) => `${t.type}[${t.dims.slice(1).join('x')}]`)].join('|');
}

/** The manifest's solver block as solver options; what it leaves out comes from SOLVER_DEFAULTS. */
export function solverDefaults(m: Manifest): ResolvedSolverOptions {
  const s = m.solver;
  return resolveSolverOptions({
    method: s.method,
    tol: s.tol,
    stopMode: s.stop_mode,
    maxIter: s.max_iter,
    history: s.history,
    andersonLambda: s.anderson_lambda,
    andersonBeta: s.anderson_beta,
    damping: s.damping,
  });
}

export function resolveDims(shape: readonly number[], length: number | undefined): number[] {
  return shape.map((d) => {
    if (d !== -1) return d;
    if (length === undefined || !Number.isInteger(length) || length < 1) throw new DeqError('DEQ_ERR_INVALID_INPUT', 'this model needs a sequence length');
    return length;
  });
}

/** One state slice of every row of z (batch × n) as a tensor of the slice's shape. */
function sliceState(z: Float32Array, batch: number, n: number, offset: number, shape: number[], stateDims: number[]): TensorValue {
  if (shape.includes(-1)) return { type: 'float32', data: z, dims: stateDims.slice() };
  const size = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(batch * size);
  for (let b = 0; b < batch; b++) data.set(z.subarray(b * n + offset, b * n + offset + size), b * size);
  return { type: 'float32', data, dims: [batch, ...shape] };
}

// The graph must take the inputs the manifest declares, or every request would fail later.
function checkGraph(m: Manifest, role: GraphRole, g: OnnxGraph): void {
  const spec = m.graphs[role]!;
  for (const t of spec.inputs) {
    if (!g.inputNames.includes(t.name)) {
      throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `${spec.file}: graph has no input "${t.name}" (manifest.graphs.${role}.inputs; graph inputs are ${g.inputNames.join(', ')})`);
    }
  }
  for (const t of spec.outputs) {
    if (!g.outputNames.includes(t.name)) {
      throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `${spec.file}: graph has no output "${t.name}" (manifest.graphs.${role}.outputs)`);
    }
  }
}
