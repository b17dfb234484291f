// DeqModel, a loaded DEQ and the runtime's public face: it holds the bundle's sessions and
// the manifest's solver defaults, and runs inject → solve(cell) → head. The phases live
// beside it: prepare-request.ts, host-infer.ts / device-infer.ts, finish-request.ts; the
// sessions model-graphs.ts; the call's types infer-types.ts.
import { kernelForPrecision, type ResolvedSolverOptions, type SolverKernel } from '../solver/index.js';
import { loadBundle, type Bundle } from './bundle.js';
import type { Manifest } from './manifest.js';
import { CellBatch, padLength, type CellPadding } from './cell-batch.js';
import { IterateLabeler } from './iterate-labels.js';
import { DEFAULT_SESSION_CONFIG, type SessionConfig } from './onnx.js';
import { warmUpModel, type WarmUpOptions, type WarmUpReport } from './warm-up.js';
import { openPrepared, type InferRequest, type InferResult, type ModelOptions, type Prepared, type SolverPlacement, type TensorValue } from './infer-types.js';
import { openModelGraphs, releaseModelGraphs, type DeviceParts, type Graphs } from './model-graphs.js';
import { labelingUnsupported, solverDefaults } from './solver-settings.js';
import { planSolve, prepareRequest } from './prepare-request.js';
import type { PreparedRef, SolvePlan } from './solve-plan.js';
import { canShareHead, finishRequest, finishTogether } from './finish-request.js';
import { hostPools, inferOnHost, type HostPools } from './host-infer.js';
import { inferOnDevice } from './device-infer.js';

export { SOLVER_PLACEMENTS } from './infer-types.js';
export type { InferRequest, InferResult, InferTiming, IterationHook, ModelOptions, Prepared, SolverPlacement, TensorValue } from './infer-types.js';
export { labelingUnsupported, solverDefaults } from './solver-settings.js';
export { resolveDims } from './prepare-request.js';

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
  /** Idle buffers of infer()'s host solves. */
  readonly #pools: HostPools = hostPools();
  readonly #device: DeviceParts | null;
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
    const { graphs, device } = await openModelGraphs(bundle, config, options.solverPlacement);
    return new DeqModel(bundle, graphs, device, options.solverKernel);
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
  infer(req: InferRequest): Promise<InferResult> {
    // Not async: the promise is the phase's own, so a caller's await costs no extra turns.
    return this.#device ? inferOnDevice(this, this.#device, req) : inferOnHost(this, this.#pools, req);
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
   * @internal The runtime's own phases (warm-up; the scheduler takes plan()); use infer().
   */
  async prepare(req: InferRequest): Promise<Prepared> {
    return prepareRequest(this.manifest, this.#defaults, req, this.#graphs.inject);
  }

  /**
   * prepare() as the continuous scheduler takes it: the request's SolvePlan (its shape, the
   * key of the solves it can share, their padding), its tensors behind an opaque PreparedRef.
   * @internal
   */
  plan(req: InferRequest): Promise<SolvePlan> {
    // Not async, and straight off prepareRequest: a wrapper's extra microtask turn would delay
    // the plan (scheduler.test.ts times mid-solve joins in turns).
    return prepareRequest(this.manifest, this.#defaults, req, this.#graphs.inject).then((prep) => planSolve(prep, this.#solverKernel, this.cellPadding(prep.length)));
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
  cellBatch(prepared: PreparedRef, capacity: number, padding?: CellPadding): CellBatch {
    const prep = openPrepared(prepared);
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

  /** The head's top-1 on iterates of `capacity` slots laid out like `prepared` (canLabel must hold). @internal */
  labeler(prepared: PreparedRef, capacity: number): IterateLabeler {
    const head = this.manifest.graphs.head!;
    return new IterateLabeler(this.#graphs.head!, { z: head.inputs[0].name, logits: this.manifest.outputs.logits }, capacity, openPrepared(prepared).stateDims.slice(1));
  }

  /** The last phase: the head on z* (batch × n), or slices of z* when the bundle has no head. @internal */
  finish(prep: Prepared, z: Float32Array, outputs?: readonly string[]): Promise<Record<string, TensorValue>> {
    return finishRequest(this.manifest, this.#graphs.head, prep, z, outputs);
  }

  /**
   * Whether requests prepared like `prepared` can share head runs (finishTogether): the head
   * reads z alone, at a shape that does not depend on the request.
   * @internal
   */
  canShareHead(prepared: PreparedRef): boolean {
    return canShareHead(this.manifest, openPrepared(prepared));
  }

  /**
   * The head over several requests' z* in one run, so rows that stop together pay one run
   * (the head is weight-bound at batch 1: docs/server.md). Each gets its own rows back, as
   * copies. Every part must pass canShareHead and want the same outputs.
   * @internal
   */
  finishTogether(parts: readonly { prep: PreparedRef; z: Float32Array }[], outputs?: readonly string[]): Promise<Record<string, TensorValue>[]> {
    return finishTogether(this.manifest, (prep, z, o) => this.finish(prep, z, o), parts, outputs);
  }

  /** Releases every native session. */
  release(): Promise<void> {
    return releaseModelGraphs(this.#graphs, this.#device);
  }
}
