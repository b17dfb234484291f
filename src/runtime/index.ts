export { loadBundle } from './bundle.js';
export type { Bundle, GraphRole, ParityCase, ParityFile } from './bundle.js';
export { DeqModel, solverDefaults } from './deq-model.js';
export type { InferRequest, InferResult, InferTiming, TensorValue } from './deq-model.js';
export type { Manifest, GraphSpec, ImagePreprocess, TensorSpec, TokenizerSpec, Task } from './manifest.js';
export { bundledProviders, DEFAULT_SESSION_CONFIG, EXECUTION_PROVIDERS } from './onnx.js';
export type { ExecutionProvider, GraphOptimization, SessionConfig } from './onnx.js';
export { argmax, checkParity } from './parity.js';
export type { ParityCaseReport, ParityReport } from './parity.js';
