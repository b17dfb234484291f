/**
 * deq-serve library API: solvers, bundle loading and DeqModel, usable
 * without the HTTP server.
 *
 * @example
 * const model = await DeqModel.load('models/fashion-mnist-jr');
 * const { outputs, solver } = await model.infer({ input, batch: 1 });
 * await model.release();
 */
export * from './solver/index.js';
export * from './runtime/index.js';
export * from './pipelines/index.js';
export { validateText } from './preprocess/text.js';
export { DeqError, ERROR_CATALOGUE, isDeqError } from './errors.js';
export type { ErrorCode } from './errors.js';
