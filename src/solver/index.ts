export { resolveSolverOptions, solve } from './solve.js';
export { defaultSolverKernel, kernelForPrecision, SOLVER_KERNELS, SolverWorkspace, type SolverKernel } from './workspace.js';
export { SOLVER_DEFAULTS, SOLVER_METHODS, STOP_MODES } from './types.js';
export type { FixedPointFn, PredictFn, ReportedSolverSettings, ResolvedSolverOptions, SolveResult, SolverMethod, SolverOptions, SolverSettings, StopMode } from './types.js';
export { summarizeSolve } from './summary.js';
export type { SolveRows, SolveSummary } from './summary.js';
export { RowEnd, SolveSession, STOP_REASONS } from './session.js';
export type { RowOptions, StopReason } from './session.js';
