import type { ErrorCode } from '../errors.js';
import type { ExecutorRequest, ExecutorResult } from '../runtime/index.js';
import type { ReportedSolverSettings, SolverSettings } from '../solver/index.js';

/** Messages between the pool (HTTP thread) and a solver worker. Plain data only. */

/** How a worker batches solver iterations across requests (`off`: one request at a time). */
export interface BatchingConfig {
  mode: 'off' | 'continuous' | 'static';
  /** Rows per cell run. */
  maxRows: number;
  maxQueueDelayMs: number;
  /** The largest share of a solve's rows one request may hold. */
  requestShare: number;
}

export interface WorkerInit {
  models: { name: string; dir: string }[];
  providers: string[];
  intraOpThreads: number;
  /** The batching settings; `mode` is the default mode, for a model missing from modelBatching. */
  batching: BatchingConfig;
  /** Each model's batching mode (--model-batching, else --batching). */
  modelBatching: Record<string, BatchingConfig['mode']>;
  /** ONNX Runtime's CPU arena and memory patterns (--ort-mem-arena, --ort-mem-pattern). */
  ortMemArena: boolean;
  ortMemPattern: boolean;
  solverKernel: string;
  /** Largest batch × sequence length one native run sees (--max-rows-per-run); bigger jobs run in slices. */
  maxRowsPerRun: number;
}

/**
 * A request as it crosses to a worker: the runtime's ExecutorRequest, plain data (no
 * onIteration hook: `stream` asks for 'progress' messages instead), plus what serving adds.
 */
export interface InferJob extends Omit<ExecutorRequest, 'onIteration'> {
  /** Every setting the solve runs with, resolved on the HTTP thread; the rest (history…) comes from the manifest. */
  solver: SolverSettings;
  /** Absolute deadline, Date.now() milliseconds (the one clock main and workers share). */
  deadline: number;
  /** Report every iteration as it happens ('progress' messages): a client watches the solve (server-sent events). */
  stream?: boolean;
  /** Its admission cost (server/admission.ts requestCost); default batch × max_iter. */
  cost?: number;
}

/** One sample's state after one iteration, as a 'progress' message carries it. */
export interface IterationEvent {
  sample: number;
  iteration: number;
  /** Residual of the iterate just evaluated (in the stop mode); null when not finite. */
  residual: number | null;
  /** Classifiers: the top-1 class of that iterate… */
  top1?: number;
  /** …and its most probable classes (up to 5), with softmax probabilities. */
  top_k?: { index: number; probability: number }[];
}

/**
 * A job's answer as it crosses back: the runtime's ExecutorResult, its settings as plain data
 * (no per-call hooks) and the solver's traces only when the request asked.
 */
export interface InferReply extends Omit<ExecutorResult, 'options'> {
  options: ReportedSolverSettings;
}

export interface SerializedError {
  code: ErrorCode;
  message: string;
}

export type ToWorker =
  | { type: 'infer'; id: number; model: string; job: InferJob }
  /** Stop the running solve at its next iteration (shutdown past the grace period). */
  | { type: 'abort' }
  /** The client went away: free the request's solver rows at the next iteration. */
  | { type: 'cancel'; id: number }
  /** Test hook: fail the way a bug in the worker would (an uncaught exception between iterations). */
  | { type: 'crash' }
  | { type: 'release' };

export type FromWorker =
  | { type: 'ready'; models: { name: string; provider: string; fallbacks: string[]; solverKernel: string; warmupMs: number }[] }
  | { type: 'fatal'; error: SerializedError }
  | { type: 'result'; id: number; reply: InferReply }
  /** A streamed job's iterations since the last progress message (InferJob.stream). */
  | { type: 'progress'; id: number; events: IterationEvent[] }
  | { type: 'error'; id: number; error: SerializedError }
  /**
   * Batching statistics since the last report: rows per cell run; joins and leaves per ended
   * solve; sequence positions the cell runs evaluated for padded models, and how many were padding.
   */
  | { type: 'stats'; model: string; rows: number[]; joins: number[]; leaves: number[]; positions: number; padPositions: number }
  | { type: 'released' };
