/**
 * deq-serve library API: solvers, bundle loading and DeqModel, and the task pipelines, usable
 * without the HTTP server. Every export is named here (docs/api.md lists them); what is not
 * here (the batching scheduler, the workers, the HTTP server) is internal and may change.
 *
 * @example
 * const model = await DeqModel.load('models/fashion-mnist-jr');
 * const { outputs, solver } = await model.infer({ input, batch: 1 });
 * await model.release();
 */
// Solvers: the fixed-point loop on any function, its settings and outcome.
export { resolveSolverOptions, solve, SOLVER_DEFAULTS, SOLVER_KERNELS, SOLVER_METHODS, STOP_MODES, STOP_REASONS, summarizeSolve } from './solver/index.js';
export type { FixedPointFn, ResolvedSolverOptions, SolveResult, SolverKernel, SolverMethod, SolverOptions, SolverSettings, SolveSummary, StopMode, StopReason } from './solver/index.js';
// Runtime: bundles, their manifests and parity cases, and a loaded model.
export { checkParity, DeqModel, EXECUTION_PROVIDERS, loadBundle, modelInputs, modelOutputs, resolveDims } from './runtime/index.js';
export type { Bundle, ExecutionProvider, InferRequest, InferResult, InferTiming, IterationHook, Manifest, ModelOptions, ParityCaseReport, ParityReport, SessionConfig, Task, TensorSpec, TensorValue, WarmUpOptions, WarmUpReport } from './runtime/index.js';
// Pipelines: one per task, from raw input to answer.
export { ImageClassificationPipeline, ImageClassifier, softmax, TASKS, TensorPipeline, TextScorer, TextScoringPipeline, topK } from './pipelines/index.js';
export type { Classification, ClassifyOptions, LabelScore, PredictOptions, ScoreOptions, TaskInfo, TextScore, TokenScore } from './pipelines/index.js';
export { validateText } from './preprocess/text.js';
export { DeqError, ERROR_CATALOGUE, isDeqError } from './errors.js';
export type { ErrorCode } from './errors.js';
