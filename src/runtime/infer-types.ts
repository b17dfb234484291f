// The types of a DeqModel call: the request, its result and timing, the prepared request the
// phases pass along (prepare → solve → finish) and how its opaque reference opens back into
// it, and the options a model is loaded with.
import type { ResolvedSolverOptions, SolveResult, SolverKernel, SolverOptions } from '../solver/index.js';
import type { Tensor } from './onnx.js';
import type { PreparedRef } from './solve-plan.js';

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
 * A request after its injection: every input, the cell's inputs after z, the state layout and
 * the solver options. DeqModel's own modules read it; the scheduler holds it as a PreparedRef.
 */
export interface Prepared extends PreparedRef {
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

/** The Prepared a PreparedRef stands for: every PreparedRef handed out (DeqModel.plan) is one. */
export function openPrepared(ref: PreparedRef): Prepared {
  return ref as Prepared;
}

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
