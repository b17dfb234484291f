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

export type Task = 'image-classification' | 'language-model';

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
}

/** manifest.json, format version 1. See docs/bundle-format.md. */
export interface Manifest {
  format: 'deq-bundle';
  format_version: 1;
  name: string;
  version?: string;
  task: Task;
  description?: string;
  graphs: { inject: GraphSpec; cell: GraphSpec; head: GraphSpec };
  state: { shape: number[] };
  solver: ManifestSolver;
  preprocess?: ImagePreprocess;
  tokenizer?: TokenizerSpec;
  labels?: string[];
  outputs: Record<string, string>;
  provenance?: Record<string, unknown>;
  parity?: { file: string; sha256: string; atol: number };
}
