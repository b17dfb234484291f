import { DeqError } from '../errors.js';
import { resolveSolverOptions, solve, SolverWorkspace, type FixedPointFn, type ResolvedSolverOptions, type SolveResult, type SolverOptions } from '../solver/index.js';
import { loadBundle, type Bundle, type GraphRole } from './bundle.js';
import type { Manifest } from './manifest.js';
import { createTensor, DEFAULT_SESSION_CONFIG, OnnxGraph, type SessionConfig, type Tensor } from './onnx.js';

/** A dense tensor as it crosses the runtime boundary. */
export interface TensorValue {
  type: 'float32' | 'int64';
  data: Float32Array | BigInt64Array;
  dims: number[];
}

export interface InferRequest {
  /** Batched model input, row-major: batch × per-sample input shape. */
  input: Float32Array | BigInt64Array;
  batch: number;
  /** Length of the symbolic (-1) input dimension, e.g. sequence length. */
  length?: number;
  /** Extra head inputs by name (language models: `targets`, batch × length int64). */
  headInputs?: Record<string, Float32Array | BigInt64Array>;
  /** Head outputs to fetch; defaults to every output role in the manifest. */
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

/**
 * A loaded DEQ: inject → solve(cell) → head over a batch, on ONNX Runtime.
 * Safe to call concurrently; each call takes its own solver workspace.
 */
export class DeqModel {
  readonly bundle: Bundle;
  readonly manifest: Manifest;
  readonly provider: string;
  readonly #graphs: Record<GraphRole, OnnxGraph>;
  readonly #defaults: ResolvedSolverOptions;
  readonly #freeWorkspaces = new Map<string, SolverWorkspace[]>();

  private constructor(bundle: Bundle, graphs: Record<GraphRole, OnnxGraph>) {
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
      const graphs = {} as Record<GraphRole, OnnxGraph>;
      for (const role of ['inject', 'cell', 'head'] as const) {
        const g = await OnnxGraph.load(bundle.graphs[role], bundle.manifest.graphs[role].file, config);
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
    const injectIn = m.graphs.inject.inputs[0];
    const inDims = [batch, ...resolveDims(injectIn.shape, req.length)];
    const expected = inDims.reduce((a, b) => a * b, 1);
    if (req.input.length !== expected) {
      throw new DeqError('DEQ_ERR_INVALID_INPUT', `input "${injectIn.name}" has ${req.input.length} values, expected ${expected} for shape [${inDims.join(', ')}]`);
    }
    const wantType = injectIn.dtype === 'int64' ? BigInt64Array : Float32Array;
    if (!(req.input instanceof wantType)) throw new DeqError('DEQ_ERR_INVALID_INPUT', `input "${injectIn.name}" must be ${injectIn.dtype}`);

    const injected = await this.#graphs.inject.run(
      { [injectIn.name]: createTensor(injectIn.dtype, req.input, inDims) },
      { [m.graphs.inject.outputs[0].name]: null },
    );
    const uT = injected[m.graphs.inject.outputs[0].name];
    const u = uT.data as Float32Array;
    const stateDims = uT.dims.slice();
    const n = u.length / batch;
    const t1 = performance.now();

    let options: ResolvedSolverOptions;
    try {
      options = resolveSolverOptions(req.solver ?? {}, this.#defaults);
    } catch (err) {
      throw new DeqError('DEQ_ERR_INVALID_SOLVER_OPTION', (err as Error).message);
    }
    const z = new Float32Array(batch * n);
    const cell = this.#cellFn(u, stateDims, n);
    const ws = this.#takeWorkspace(options, batch, n);
    let result: SolveResult;
    try {
      result = await solve(cell.f, batch, n, z, options, ws);
    } finally {
      this.#returnWorkspace(ws);
    }
    const t2 = performance.now();

    const head = m.graphs.head;
    const feeds: Record<string, Tensor> = { [head.inputs[0].name]: createTensor('float32', z, stateDims) };
    for (const spec of head.inputs.slice(1)) {
      const data = req.headInputs?.[spec.name];
      if (!data) throw new DeqError('DEQ_ERR_INVALID_INPUT', `head input "${spec.name}" is required`);
      const dims = [batch, ...resolveDims(spec.shape, req.length)];
      if (data.length !== dims.reduce((a, b) => a * b, 1)) throw new DeqError('DEQ_ERR_INVALID_INPUT', `head input "${spec.name}" must have shape [${dims.join(', ')}]`);
      feeds[spec.name] = createTensor(spec.dtype, data, dims);
    }
    const wanted = req.outputs ?? Object.values(m.outputs);
    const fetches: Record<string, null> = {};
    for (const name of wanted) {
      if (!this.#graphs.head.outputNames.includes(name)) throw new DeqError('DEQ_ERR_INVALID_INPUT', `unknown output "${name}" (model has ${this.#graphs.head.outputNames.join(', ')})`);
      fetches[name] = null;
    }
    const headOut = await this.#graphs.head.run(feeds, fetches);
    const outputs: Record<string, TensorValue> = {};
    for (const name of wanted) {
      const t = headOut[name];
      outputs[name] = { type: t.type as TensorValue['type'], data: t.data as TensorValue['data'], dims: t.dims.slice() };
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

  /** Releases every native session. */
  async release(): Promise<void> {
    await Promise.allSettled(Object.values(this.#graphs).map((g) => g.release()));
  }

  // f(z) over the cell graph. Finished samples are compacted out of the batch
  // so the graph only runs on rows still iterating.
  #cellFn(u: Float32Array, stateDims: number[], n: number): { f: FixedPointFn; elapsed: () => number } {
    const cell = this.#graphs.cell;
    const spec = this.manifest.graphs.cell;
    const zName = spec.inputs[0].name, uName = spec.inputs[1].name, outName = spec.outputs[0].name;
    const batch = stateDims[0];
    const tail = stateDims.slice(1);
    let elapsed = 0;
    const uFull = createTensor('float32', u, stateDims);
    // The solver hands over the same two buffers every call: wrap them once.
    let zFull: Tensor | null = null, outFull: Tensor | null = null;
    // Compaction buffers are made on first need: a batch that converges in step uses none.
    let zc: Float32Array | null = null, uc: Float32Array | null = null, oc: Float32Array | null = null;
    const lastMask = new Uint8Array(batch);
    let lastCount = -1;
    const f: FixedPointFn = async (z, out, active) => {
      let count = 0;
      for (let i = 0; i < batch; i++) count += active[i];
      const start = performance.now();
      if (count === batch) {
        if (zFull?.data !== z) zFull = createTensor('float32', z, stateDims);
        if (outFull?.data !== out) outFull = createTensor('float32', out, stateDims);
        await cell.run({ [zName]: zFull, [uName]: uFull }, { [outName]: outFull });
      } else {
        if (!zc) { zc = new Float32Array(batch * n); uc = new Float32Array(batch * n); oc = new Float32Array(batch * n); }
        let same = count === lastCount;
        for (let i = 0; same && i < batch; i++) same = lastMask[i] === active[i];
        for (let i = 0, r = 0; i < batch; i++) {
          if (!active[i]) continue;
          zc.set(z.subarray(i * n, (i + 1) * n), r * n);
          if (!same) uc!.set(u.subarray(i * n, (i + 1) * n), r * n);
          r++;
        }
        lastMask.set(active);
        lastCount = count;
        const dims = [count, ...tail];
        const len = count * n;
        await cell.run(
          { [zName]: createTensor('float32', zc.subarray(0, len), dims), [uName]: createTensor('float32', uc!.subarray(0, len), dims) },
          { [outName]: createTensor('float32', oc!.subarray(0, len), dims) },
        );
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
    const key = `${o.method}:${batch}:${n}:${o.history}`;
    return this.#freeWorkspaces.get(key)?.pop() ?? new SolverWorkspace(o.method, batch, n, o.history);
  }

  #returnWorkspace(ws: SolverWorkspace): void {
    const key = `${ws.method}:${ws.batch}:${ws.n}:${ws.history}`;
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

function resolveDims(shape: readonly number[], length: number | undefined): number[] {
  return shape.map((d) => {
    if (d !== -1) return d;
    if (length === undefined || !Number.isInteger(length) || length < 1) throw new DeqError('DEQ_ERR_INVALID_INPUT', 'this model needs a sequence length');
    return length;
  });
}

// The graph must take the inputs the manifest declares, or every request would fail later.
function checkGraph(m: Manifest, role: GraphRole, g: OnnxGraph): void {
  const spec = m.graphs[role];
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
