import type { SolverMethod, StopMode } from '../solver/index.js';

/** Per-sample tensor declaration (batch dimension omitted; -1 = symbolic). */
export interface TensorSpec {
  name: string;
  dtype: 'float32' | 'int64';
  shape: number[];
}

export interface GraphSpec {
  file: string;
  sha256: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

/** `tensor`: named float32/int64 inputs and outputs of any shape, served by /predict and v2. */
export type Task = 'image-classification' | 'language-model' | 'tensor';

/** A named slice of the flattened fixed point z*, served as an output when the bundle has no head. */
export interface StateOutput extends TensorSpec {
  dtype: 'float32';
  /** Offset into the flattened per-sample state. */
  offset: number;
}

export interface ImagePreprocess {
  kind: 'image';
  width: number;
  height: number;
  channels: 1 | 3;
  mean: number[];
  std: number[];
  invert?: boolean;
  resize?: 'contain' | 'cover' | 'fill';
}

export interface TokenizerSpec {
  kind: 'brown-words';
  vocab_file: string;
  sha256: string;
  unk: string;
  bos: string;
  eos: string;
  lowercase?: boolean;
  /** Context window in tokens. */
  context: number;
  /** Sliding-window stride for texts longer than the context. */
  stride?: number;
}

export interface ManifestSolver {
  method: SolverMethod;
  tol: number;
  stop_mode: StopMode;
  max_iter: number;
  history?: number;
  anderson_lambda?: number;
  anderson_beta?: number;
  damping?: number;
  /**
   * Arithmetic of the solver's row algebra. `float64` (the default) reproduces the reference
   * solver's iterates; `float32` is faster and is declared by a model's author after checking
   * that float32 rounding does not move the model's answers (docs/bundle-format.md).
   */
  precision?: 'float64' | 'float32';
}

/** manifest.json, format version 1. See docs/bundle-format.md. */
export interface Manifest {
  format: 'deq-bundle';
  format_version: 1;
  name: string;
  version?: string;
  task: Task;
  description?: string;
  /** inject and head are optional (task "tensor"); image and language models have all three. */
  graphs: { inject?: GraphSpec; cell: GraphSpec; head?: GraphSpec };
  state: {
    shape: number[];
    /**
     * `right`: the cell is causal along the state's axis 0 (position t of f(z, u…)
     * depends only on positions ≤ t of z and of every cell input), so a window
     * right-padded to a longer length solves exactly as alone. The scheduler then
     * pads windows of different lengths to a shared length (docs/bundle-format.md).
     */
    pad?: 'right';
  };
  /** Without a head: the outputs (default: all of z* as "z_star"). */
  state_outputs?: StateOutput[];
  solver: ManifestSolver;
  preprocess?: ImagePreprocess;
  tokenizer?: TokenizerSpec;
  labels?: string[];
  outputs: Record<string, string>;
  provenance?: Record<string, unknown>;
  parity?: { file: string; sha256: string; atol: number };
}

/**
 * The tensors a caller supplies, in order: inject's inputs (or, without inject, the cell's
 * inputs after z), then the head's extra inputs (a language model's targets).
 */
export function modelInputs(m: Manifest): TensorSpec[] {
  const first = m.graphs.inject ? m.graphs.inject.inputs : m.graphs.cell.inputs.slice(1);
  return [...first, ...(m.graphs.head?.inputs.slice(1) ?? [])];
}

/** The tensors the model can return: the head's outputs, or slices of z* without a head. */
export function modelOutputs(m: Manifest): TensorSpec[] {
  if (m.graphs.head) return m.graphs.head.outputs;
  return stateOutputs(m);
}

/** Without a head: the declared state slices, or all of z* as "z_star". */
export function stateOutputs(m: Manifest): StateOutput[] {
  return m.state_outputs ?? [{ name: 'z_star', dtype: 'float32', shape: m.state.shape, offset: 0 }];
}
