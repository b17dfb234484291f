// The narrow contract between DeqModel and the continuous scheduler (issue #20): what the
// scheduler sees of a prepared request (SolvePlan) is its shape, its solver settings, the key
// of the solves it can share and their padding; its tensors stay behind an opaque reference
// (PreparedRef) that only DeqModel's methods and CellBatch open. Nothing here is an ONNX
// Runtime type, and nothing here may import one.
import type { ResolvedSolverOptions } from '../solver/index.js';
import type { CellPadding } from './cell-batch.js';

declare const preparedBrand: unique symbol;

/**
 * A prepared request as the scheduler holds it: opaque, handed back to DeqModel (cellBatch,
 * labeler, canShareHead, finishTogether) and CellBatch.setRow. It stands for a Prepared
 * (infer-types.ts), which every Prepared is; the brand exists at the type level only.
 */
export interface PreparedRef {
  readonly [preparedBrand]: 'Prepared';
}

/** A prepared request as the scheduler sees it (DeqModel.plan). */
export interface SolvePlan {
  /** Samples (rows) of the request. */
  readonly batch: number;
  /** Length of the symbolic input dimension (sequence length), when the model has one. */
  readonly length: number | undefined;
  /** Values per sample of the request's own state (unpadded). */
  readonly n: number;
  /** The request's state shape, batch first (unpadded); its answer's state carries it as dims. */
  readonly stateDims: number[];
  readonly options: ResolvedSolverOptions;
  /**
   * Requests whose plans have the same key can share a solve: same solver method and
   * parameters, kernel, and per-row shapes of the state and of the cell's inputs (padded).
   */
  readonly key: string;
  /** Padded models: the length the request's rows are solved at (DeqModel.cellPadding). */
  readonly padding: CellPadding | undefined;
  /** The request's tensors, for DeqModel and CellBatch only. */
  readonly prepared: PreparedRef;
}
