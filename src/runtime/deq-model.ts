import { DeqError } from '../errors.js';
import { defaultSolverKernel, resolveSolverOptions, solve, SolverWorkspace, type FixedPointFn, type ResolvedSolverOptions, type SolveResult, type SolverKernel, type SolverOptions } from '../solver/index.js';
import { loadBundle, type Bundle, type GraphRole } from './bundle.js';
import { modelInputs, modelOutputs, stateOutputs, type Manifest, type TensorSpec } from './manifest.js';
import { createTensor, DEFAULT_SESSION_CONFIG, OnnxGraph, type SessionConfig, type Tensor } from './onnx.js';

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

/** The open graphs: the cell always, inject and head when the bundle has them. */
type Graphs = Partial<Record<GraphRole, OnnxGraph>> & { cell: OnnxGraph };

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
  /**
   * Where the solver's row algebra runs: `wasm` (SIMD kernels, the default when they
   * load) or `js` (the scalar reference). docs/solver.md has the measurements.
   */
  solverKernel: SolverKernel = defaultSolverKernel();

  private constructor(bundle: Bundle, graphs: Graphs) {
    this.bundle = bundle;
    this.manifest = bundle.manifest;
    this.#graphs = graphs;
    this.provider = graphs.cell.provider;
    this.#defaults = solverDefaults(bundle.manifest);
  }

  /** Loads and verifies a bundle folder, then opens its three graphs. Nothing stays open on failure. */
  static async load(dir: string, session: Partial<SessionConfig> = {}): Promise<DeqModel> {
    return DeqModel.fromBundle(await loadBundle(dir), session);
  }

  static async fromBundle(bundle: Bundle, session: Partial<SessionConfig> = {}): Promise<DeqModel> {
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
      return new DeqModel(bundle, graphs);
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

  /** Runs the model on a batch. */
  async infer(req: InferRequest): Promise<InferResult> {
    const t0 = performance.now();
    const m = this.manifest;
    const { batch } = req;
    if (!Number.isInteger(batch) || batch < 1) throw new DeqError('DEQ_ERR_INVALID_INPUT', `batch must be a positive integer (got ${batch})`);
    const feedsByName = this.#modelFeeds(req);
    const inject = m.graphs.inject;

    // The cell's inputs after z: inject's outputs, or (no inject graph) the raw inputs.
    let cellArgs: Record<string, Tensor> = feedsByName;
    if (inject) {
      const fetches: Record<string, null> = {};
      for (const o of inject.outputs) fetches[o.name] = null;
      const feeds: Record<string, Tensor> = {};
      for (const t of inject.inputs) feeds[t.name] = feedsByName[t.name];
      cellArgs = await this.#graphs.inject!.run(feeds, fetches);
    }
    const args = m.graphs.cell.inputs.slice(1).map((spec) => cellArgs[spec.name]);
    const stateDims = [batch, ...resolveDims(m.state.shape, req.length)];
    const n = stateDims.slice(1).reduce((a, b) => a * b, 1);
    const t1 = performance.now();

    let options: ResolvedSolverOptions;
    try {
      options = resolveSolverOptions(req.solver ?? {}, this.#defaults);
    } catch (err) {
      throw new DeqError('DEQ_ERR_INVALID_SOLVER_OPTION', (err as Error).message);
    }
    const z = new Float32Array(batch * n);
    const cell = this.#cellFn(args, stateDims, n);
    const ws = this.#takeWorkspace(options, batch, n);
    let result: SolveResult;
    try {
      result = await solve(cell.f, batch, n, z, options, ws);
    } finally {
      this.#returnWorkspace(ws);
    }
    const t2 = performance.now();

    const available = modelOutputs(m).map((o) => o.name);
    const wanted = req.outputs ?? Object.values(m.outputs);
    for (const name of wanted) {
      if (!available.includes(name)) throw new DeqError('DEQ_ERR_INVALID_INPUT', `unknown output "${name}" (model has ${available.join(', ')})`);
    }
    const outputs: Record<string, TensorValue> = {};
    const head = m.graphs.head;
    if (head) {
      const feeds: Record<string, Tensor> = { [head.inputs[0].name]: createTensor('float32', z, stateDims) };
      for (const spec of head.inputs.slice(1)) feeds[spec.name] = feedsByName[spec.name];
      const fetches: Record<string, null> = {};
      for (const name of wanted) fetches[name] = null;
      const headOut = await this.#graphs.head!.run(feeds, fetches);
      for (const name of wanted) {
        const t = headOut[name];
        outputs[name] = { type: t.type as TensorValue['type'], data: t.data as TensorValue['data'], dims: t.dims.slice() };
      }
    } else {
      for (const s of stateOutputs(m)) if (wanted.includes(s.name)) outputs[s.name] = sliceState(z, batch, n, s.offset, s.shape, stateDims);
    }
    const t3 = performance.now();
    return {
      outputs,
      ...(req.returnState ? { state: { type: 'float32' as const, data: z, dims: stateDims } } : {}),
      solver: result,
      options,
      timing: { injectMs: t1 - t0, solveMs: t2 - t1, cellMs: cell.elapsed(), headMs: t3 - t2, totalMs: t3 - t0 },
    };
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

  /** Releases every native session. */
  async release(): Promise<void> {
    await Promise.allSettled(Object.values(this.#graphs).map((g) => g.release()));
  }

  // f(z) over the cell graph. Finished samples are compacted out of the batch
  // so the graph only runs on rows still iterating. `args` are the cell's inputs
  // after z (inject outputs or raw inputs), any shape and dtype, batch first.
  #cellFn(args: Tensor[], stateDims: number[], n: number): { f: FixedPointFn; elapsed: () => number } {
    const cell = this.#graphs.cell;
    const spec = this.manifest.graphs.cell;
    const zName = spec.inputs[0].name, outName = spec.outputs[0].name;
    const argNames = spec.inputs.slice(1).map((t) => t.name);
    const batch = stateDims[0];
    const tail = stateDims.slice(1);
    let elapsed = 0;
    const fullFeeds: Record<string, Tensor> = {};
    for (const [i, name] of argNames.entries()) fullFeeds[name] = args[i];
    // The solver hands over the same two buffers every call: wrap them once.
    let zFull: Tensor | null = null, outFull: Tensor | null = null;
    // Compaction buffers are made on first need: a batch that converges in step uses none.
    let zc: Float32Array | null = null, oc: Float32Array | null = null;
    let argc: { data: Float32Array | BigInt64Array; per: number; tail: number[] }[] | null = null;
    const lastMask = new Uint8Array(batch);
    let lastCount = -1;
    const f: FixedPointFn = async (z, out, active) => {
      let count = 0;
      for (let i = 0; i < batch; i++) count += active[i];
      const start = performance.now();
      if (count === batch) {
        if (zFull?.data !== z) zFull = createTensor('float32', z, stateDims);
        if (outFull?.data !== out) outFull = createTensor('float32', out, stateDims);
        fullFeeds[zName] = zFull;
        await cell.run(fullFeeds, { [outName]: outFull });
      } else {
        if (!zc) {
          zc = new Float32Array(batch * n); oc = new Float32Array(batch * n);
          argc = args.map((t) => {
            const data = t.data as Float32Array | BigInt64Array;
            const per = data.length / batch;
            return { data: new (data.constructor as Float32ArrayConstructor | BigInt64ArrayConstructor)(data.length), per, tail: t.dims.slice(1) };
          });
        }
        let same = count === lastCount;
        for (let i = 0; same && i < batch; i++) same = lastMask[i] === active[i];
        for (let i = 0, r = 0; i < batch; i++) {
          if (!active[i]) continue;
          zc.set(z.subarray(i * n, (i + 1) * n), r * n);
          if (!same) {
            for (let a = 0; a < args.length; a++) copyRow(argc![a].data, args[a].data as Float32Array | BigInt64Array, argc![a].per, i, r);
          }
          r++;
        }
        lastMask.set(active);
        lastCount = count;
        const dims = [count, ...tail];
        const len = count * n;
        const feeds: Record<string, Tensor> = { [zName]: createTensor('float32', zc.subarray(0, len), dims) };
        for (const [a, name] of argNames.entries()) {
          const c = argc![a];
          feeds[name] = createTensor(args[a].type as 'float32' | 'int64', c.data.subarray(0, count * c.per), [count, ...c.tail]);
        }
        await cell.run(feeds, { [outName]: createTensor('float32', oc!.subarray(0, len), dims) });
        for (let i = 0, r = 0; i < batch; i++) {
          if (!active[i]) continue;
          out.set(oc!.subarray(r * n, (r + 1) * n), i * n);
          r++;
        }
      }
      elapsed += performance.now() - start;
    };
    return { f, elapsed: () => elapsed };
  }

  #takeWorkspace(o: ResolvedSolverOptions, batch: number, n: number): SolverWorkspace {
    const key = `${o.method}:${batch}:${n}:${o.history}:${this.solverKernel}`;
    return this.#freeWorkspaces.get(key)?.pop() ?? new SolverWorkspace(o.method, batch, n, o.history, this.solverKernel);
  }

  #returnWorkspace(ws: SolverWorkspace): void {
    const key = `${ws.method}:${ws.batch}:${ws.n}:${ws.history}:${ws.kernel}`;
    const list = this.#freeWorkspaces.get(key) ?? [];
    // A few spares per shape: enough for steady traffic, bounded for odd batch sizes.
    if (list.length < 2) list.push(ws);
    this.#freeWorkspaces.set(key, list);
  }
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

/** Copies row `from` of src into row `to` of dst (rows of `per` values, same element type). */
function copyRow(dst: Float32Array | BigInt64Array, src: Float32Array | BigInt64Array, per: number, from: number, to: number): void {
  if (dst instanceof Float32Array) dst.set(src.subarray(from * per, (from + 1) * per) as Float32Array, to * per);
  else dst.set(src.subarray(from * per, (from + 1) * per) as BigInt64Array, to * per);
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
