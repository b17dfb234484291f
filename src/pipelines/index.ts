export { ImageClassificationPipeline, ImageClassifier, softmax, topK } from './image-classification.js';
export type { Classification, ClassifyOptions, LabelScore } from './image-classification.js';
export { planWindows, scoreStream, TEXT_SCORING_DEFAULTS, TextScorer, TextScoringPipeline, windowScoringOf } from './text-scoring.js';
export type { RunOptions, ScoreOptions, StreamScores, WindowOptions, TextScore, TextScoringConfig, TokenScore, WindowPlan, WindowResult, WindowRunner, WindowScoring } from './text-scoring.js';
export { nestedInputs, nestedOutput, nestedShape, tensorInputs, TensorPipeline, V2_DATATYPE } from './tensor.js';
export type { PredictOptions, ProvidedTensor, TensorBatch, TensorLimits } from './tensor.js';
export { TASKS, taskRoute } from './tasks.js';
export type { TaskInfo } from './tasks.js';
