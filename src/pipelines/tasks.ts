// The task registry (transformers.js's SUPPORTED_TASKS is the model): for each bundle task, its
// pipeline, the HTTP route that serves it, the CLI command that runs it, the inputs benchmarks
// use and whether batching helps it. Routes, the CLI and error messages look tasks up here.
import type { Manifest, Task } from '../runtime/index.js';
import { ImageClassificationPipeline } from './image-classification.js';
import { TensorPipeline } from './tensor.js';
import { TextScoringPipeline } from './text-scoring.js';

export interface TaskInfo {
  /** The library pipeline (from raw input to answer on an in-process model); a function, as the pipelines import this registry. */
  pipeline: () => typeof ImageClassificationPipeline | typeof TextScoringPipeline | typeof TensorPipeline;
  /** The route segment after /v1/models/{name}/ (every task is also served by v2 infer). */
  route: 'classify' | 'score' | 'predict';
  /** `deq-serve <command> <bundle> …`. */
  command: 'classify' | 'score' | 'run';
  /** What `bench solve` / `bench compare` feed it: a dataset when one applies, else the bundle's parity inputs. */
  benchInputs: 'fashion-mnist' | 'brown' | 'parity';
}

export const TASKS: Readonly<Record<Task, TaskInfo>> = Object.freeze({
  'image-classification': { pipeline: () => ImageClassificationPipeline, route: 'classify', command: 'classify', benchInputs: 'fashion-mnist' },
  'language-model': { pipeline: () => TextScoringPipeline, route: 'score', command: 'score', benchInputs: 'brown' },
  tensor: { pipeline: () => TensorPipeline, route: 'predict', command: 'run', benchInputs: 'parity' },
});

/** The routes that serve a model's task, for wrong-task errors. */
export function taskRoute(name: string, m: Pick<Manifest, 'task'>): string {
  return `/v1/models/${name}/${TASKS[m.task].route} (or /v2/models/${name}/infer)`;
}
