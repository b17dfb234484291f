import { DeqModel, type InferRequest } from '../runtime/index.js';
import { normalizePixels } from '../preprocess/normalize.js';
import { benchRequest } from './bench.js';
import { readFashionMnist, type ImageSet } from './fashion-mnist.js';

/** Images (and labels) for benchmarks: Fashion-MNIST test images normalized for the model. */
export interface BenchImages {
  count: number;
  /** count × per normalized values. */
  input: Float32Array;
  labels: Uint8Array;
  per: number;
  source: string;
}

/**
 * The first `count` Fashion-MNIST test images, preprocessed as `model` expects,
 * or null when the model is not a 28×28 grayscale classifier or the set cannot be read.
 */
export async function benchImages(model: DeqModel, count: number, dataDir?: string): Promise<BenchImages | null> {
  const p = model.manifest.preprocess;
  if (!p || p.width !== 28 || p.height !== 28 || p.channels !== 1) return null;
  let set: ImageSet;
  try {
    set = await readFashionMnist('test', dataDir);
  } catch {
    return null;
  }
  const n = Math.min(count, set.count);
  const per = set.rows * set.cols;
  const input = new Float32Array(n * per);
  for (let i = 0; i < n; i++) normalizePixels(set.images.subarray(i * per, (i + 1) * per), p, input, i * per);
  return { count: n, input, labels: set.labels.slice(0, n), per, source: `Fashion-MNIST test images 0–${n - 1}${dataDir ? ` (${dataDir})` : ''}` };
}

/** A batch request over images [first, first + batch) (wrapping), or the bundle's parity input repeated. */
export function batchRequest(model: DeqModel, images: BenchImages | null, batch: number, first: number): InferRequest {
  if (!images) return benchRequest(model, batch);
  const input = new Float32Array(batch * images.per);
  for (let i = 0; i < batch; i++) {
    const k = (first + i) % images.count;
    input.set(images.input.subarray(k * images.per, (k + 1) * images.per), i * images.per);
  }
  return { input, batch };
}
