import { DeqError } from '../errors.js';
import { imageToTensor, type ImageLimits } from '../preprocess/image.js';
import { DeqModel, type InferRequest, type ImagePreprocess, type Manifest, type SessionConfig } from '../runtime/index.js';
import type { SolverOptions } from '../solver/index.js';
import { taskRoute } from './tasks.js';

// Image classification, one home: decode + normalize per the manifest, the model's
// logits, then softmax, top-k and labels. The /classify route and the library both come here.

export interface LabelScore {
  label: string;
  index: number;
  probability: number;
}

export interface Classification {
  /** The most probable label. */
  label: string;
  /** The top-k labels, most probable first. */
  labels: LabelScore[];
  /** The head's raw logits, one per label. */
  logits: Float32Array;
}

/** Numerically stable softmax, in float64. */
export function softmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += out[i] = Math.exp(logits[i] - max);
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/** Indices of the k largest values, largest first (ties keep index order). */
export function topK(values: ArrayLike<number>, k: number): number[] {
  const order = Array.from({ length: values.length }, (_, i) => i);
  order.sort((a, b) => values[b] - values[a] || a - b);
  return order.slice(0, Math.max(0, Math.min(k, values.length)));
}

/**
 * What an image-classification bundle needs around its model: pre-processing from
 * the manifest's `preprocess`, post-processing into labels. Holds no sessions, so the
 * server's HTTP thread uses it while the solve runs on a worker.
 */
export class ImageClassifier {
  readonly manifest: Manifest;
  readonly preprocessSpec: ImagePreprocess;
  readonly labels: readonly string[];
  /** The head output holding the logits. */
  readonly logitsOutput: string;

  /** `name`: the served name, when a server asks (its wrong-task error names the route to use). */
  constructor(manifest: Manifest, name?: string) {
    if (manifest.task !== 'image-classification' || !manifest.preprocess || !manifest.labels) {
      throw new DeqError('DEQ_ERR_WRONG_TASK', `${name ?? manifest.name} is a ${manifest.task} model, not an image classifier${name ? `; use ${taskRoute(name, manifest)}` : ''}`);
    }
    const logits = manifest.outputs.logits;
    if (!logits) throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `${manifest.name}: an image classifier needs manifest.outputs.logits`);
    this.manifest = manifest;
    this.preprocessSpec = manifest.preprocess;
    this.labels = manifest.labels;
    this.logitsOutput = logits;
  }

  /** Decodes an untrusted image into the model input (1 × C × H × W). */
  preprocess(bytes: Uint8Array, limits: ImageLimits): Promise<Float32Array> {
    return imageToTensor(bytes, this.preprocessSpec, limits);
  }

  /**
   * The whole task on a decoded input: `run` solves it (an in-process model, or the server's
   * worker pool with its deadlines and cancellation), then the logits become labels.
   */
  async classify<R extends { outputs: Record<string, { data: unknown }> }>(input: Float32Array, run: (req: InferRequest) => Promise<R>, k: number): Promise<{ classification: Classification; result: R }> {
    const result = await run({ input, batch: 1, outputs: [this.logitsOutput] });
    return { classification: this.postprocess(result.outputs[this.logitsOutput].data as Float32Array, k), result };
  }

  /** Logits → probabilities → the top-k labels. */
  postprocess(logits: Float32Array, k: number): Classification {
    const probs = softmax(logits);
    const labels = topK(probs, k).map((i) => ({ label: this.labels[i], index: i, probability: probs[i] }));
    return { label: labels[0].label, labels, logits };
  }
}

export interface ClassifyOptions {
  topK?: number;
  solver?: Partial<SolverOptions>;
  limits?: ImageLimits;
}

/** The image-classification pipeline on an in-process DeqModel. */
export class ImageClassificationPipeline {
  readonly model: DeqModel;
  readonly classifier: ImageClassifier;

  constructor(model: DeqModel) {
    this.model = model;
    this.classifier = new ImageClassifier(model.manifest);
  }

  static async load(dir: string, session: Partial<SessionConfig> = {}): Promise<ImageClassificationPipeline> {
    const model = await DeqModel.load(dir, session);
    try {
      return new ImageClassificationPipeline(model);
    } catch (err) {
      await model.release();
      throw err;
    }
  }

  /** Classifies one encoded image (PNG, JPEG, …). */
  async classify(bytes: Uint8Array, opts: ClassifyOptions = {}) {
    const input = await this.classifier.preprocess(bytes, opts.limits ?? { maxPixels: 4096 * 4096 });
    const { classification, result } = await this.classifier.classify(input, (req) => this.model.infer({ ...req, solver: opts.solver }), opts.topK ?? 5);
    return { ...classification, solver: result.solver, options: result.options, timing: result.timing };
  }

  async release(): Promise<void> {
    await this.model.release();
  }
}
