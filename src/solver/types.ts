/** Root-finding method used to reach z* = f(z*). */
export type SolverMethod = 'broyden' | 'anderson' | 'fixed-point';

/** `abs`: ‖f(z)−z‖₂; `rel`: ‖f(z)−z‖₂ / (‖f(z)‖₂ + 1e-9). Both per sample. */
export type StopMode = 'abs' | 'rel';

export const SOLVER_METHODS: readonly SolverMethod[] = Object.freeze(['broyden', 'anderson', 'fixed-point']);
export const STOP_MODES: readonly StopMode[] = Object.freeze(['abs', 'rel']);

/**
 * Evaluates f on a batch. `z` and `out` hold `batch × n` values, row-major.
 * f must write the rows whose `active[i]` is 1; other rows are never read.
 */
export type FixedPointFn = (z: Float32Array, out: Float32Array, active: Uint8Array) => void | Promise<void>;

/**
 * Labels the current iterate of the rows whose `want[i]` is 1: writes into `labels[i]` an
 * integer that names the model's answer there (a classifier's top-1 class) and into
 * `margins[i]` how sure it is (the top-1's softmax probability minus the runner-up's).
 * The solver only compares these numbers; what they mean is the caller's (the head runs here).
 */
export type PredictFn = (z: Float32Array, want: Uint8Array, labels: Int32Array, margins: Float64Array) => void | Promise<void>;

/**
 * What one solve request chooses: the method and when each sample stops. Declared once, here:
 * SolverOptions adds the model's own settings (history, damping…) and the per-call hooks, and
 * every hop above (a request, a job sent to a worker, a reply, a session row) reuses these fields.
 */
export interface SolverSettings {
  method: SolverMethod;
  /** Stop a sample once its residual is below this. */
  tol: number;
  stopMode: StopMode;
  /** Cap on evaluations of f per sample (the initial f(z₀) included). */
  maxIter: number;
  /**
   * Early exit on a stable prediction: a sample also stops once `predict` has given it the
   * same label for `patience` consecutive iterations (patience + 1 iterates agree) while its
   * residual is below `predictionTol`. 0 (the default) turns it off. Needs `predict`.
   */
  patience?: number;
  /** The loose residual bound (in `stopMode`) under which a stable prediction may stop a sample. */
  predictionTol?: number;
  /** …and the margin `predict` gives the label must be at least this (0: any). */
  predictionMargin?: number;
  /** Keep each sample's residual per evaluation, and its label when `predict` is given (allocates). */
  trace?: boolean;
}

/** The settings a solve ran with, as its result reports them: plain data, every stopping rule filled in. */
export type ReportedSolverSettings = Required<Omit<SolverSettings, 'trace'>>;

/** Options common to every solver: a request's settings and the model's own. */
export interface SolverOptions extends SolverSettings {
  /** Broyden/Anderson memory m. Workspace grows with m, never with maxIter. */
  history: number;
  /** Broyden: Armijo backtracking on ‖g‖. Costs extra evaluations of f. */
  lineSearch?: boolean;
  /** Anderson regularization λ added to the Gram matrix. */
  andersonLambda?: number;
  /** Anderson mixing β. */
  andersonBeta?: number;
  /** Fixed-point damping: z ← (1−d)·z + d·f(z). */
  damping?: number;
  /** A sample whose abs residual exceeds this factor × its starting residual is diverged. */
  divergenceFactor?: number;
  /**
   * Broyden/Anderson: when a sample's residual climbs past this factor × its best,
   * its history is cleared and it restarts from its best iterate. Overwriting old
   * Broyden updates in a ring can corrupt the inverse-Jacobian estimate on hard
   * (nearly non-contractive) cells; this is the guard. Infinity disables it.
   */
  restartFactor?: number;
  /**
   * Per-sample tolerance and cap, overriding `tol` and `maxIter` row by row: requests
   * batched together each keep their own. Lengths must equal the batch.
   */
  sampleTol?: ArrayLike<number>;
  sampleMaxIter?: ArrayLike<number>;
  /** Labels iterates, for `patience` and the label trace (see PredictFn). Per call. */
  predict?: PredictFn;
  /**
   * Called after every iteration for each sample evaluated in it: the sample's evaluation
   * count, the residual of the iterate just evaluated, and its label (−1 without `predict`).
   * For watching a solve live (server-sent events). Per call; keeps per-sample traces.
   */
  onIteration?: (sample: number, iteration: number, residual: number, label: number) => void;
  /** Polled between iterations; returning true stops the solve (deadlines). */
  shouldStop?: () => boolean;
}

/** Per-sample outcome of a solve. Arrays have one entry per sample. */
export interface SolveResult {
  /** Evaluations of f this sample took part in. */
  iterations: Int32Array;
  /** Residual (in the chosen stop mode) of the returned iterate. */
  residual: Float64Array;
  converged: Uint8Array;
  /** NaN/Inf appeared, or the residual blew up past divergenceFactor. */
  diverged: Uint8Array;
  /** Batched calls of f made (each may cover fewer samples as they finish). */
  calls: number;
  /** True when shouldStop() ended the solve early. */
  stopped: boolean;
  /** How each sample's solve ended (RowEnd: 1 converged, 2 reached max_iter, 3 diverged, 4 stopped from outside, 5 stable prediction). */
  end: Uint8Array;
  /** Per-sample residual after each evaluation, when `trace` was requested. */
  trace?: Float64Array[];
  /** Per-sample label of each evaluated iterate, when `trace` was requested with `predict`. */
  traceLabels?: Int32Array[];
}

/** Options that have no default: they are per call. */
type PerCall = 'shouldStop' | 'sampleTol' | 'sampleMaxIter' | 'predict' | 'onIteration';

export const SOLVER_DEFAULTS: Readonly<Required<Omit<SolverOptions, PerCall>>> = Object.freeze({
  method: 'broyden',
  tol: 1e-3,
  stopMode: 'rel',
  maxIter: 30,
  history: 8,
  lineSearch: false,
  andersonLambda: 1e-4,
  andersonBeta: 1.0,
  damping: 1.0,
  divergenceFactor: 1e4,
  restartFactor: 10,
  patience: 0,
  predictionTol: 0.1,
  predictionMargin: 0,
  trace: false,
});

/** Options with every default filled in. */
export type ResolvedSolverOptions = Required<Omit<SolverOptions, PerCall>> & Pick<SolverOptions, PerCall>;
