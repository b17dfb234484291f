import { DeqError } from '../errors.js';
import { windowScoringOf, type WindowScoring } from '../pipelines/text-scoring.js';
import { DeqModel, type InferRequest } from '../runtime/index.js';
import { normalizePixels } from '../preprocess/normalize.js';
import { benchRequest } from './bench.js';
import { brownCorpusDir, encodeStream, readBrownSplits, streamSha256 } from './brown-corpus.js';
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

/** Token ids for language-model benchmarks: the Brown test split, encoded as `deq-serve eval` does. */
export interface BenchWindows {
  /** The whole test stream's ids (a row scores a prefix of it, see windowTokens). */
  ids: Int32Array;
  /** The bundle's window layout (context, stride, bos, targets input and output); `batch` is set per row. */
  layout: WindowScoring;
  source: string;
}

/**
 * Tokens that `windows` full sliding windows cover: planWindows over this many ids
 * gives exactly `windows` windows, each `context` long, the last one ending at the
 * last id, so every window of a row is full and a batch is well defined.
 */
export function windowTokens(windows: number, context: number, stride: number): number {
  return context + (windows - 1) * stride;
}

/**
 * The Brown test split (the one the model never saw) as ids of `model`'s vocabulary,
 * read and encoded as `deq-serve eval --dataset brown` does, or null when `model` is not
 * a language model with a tokenizer. Throws when the split differs from the one the
 * bundle records in provenance.data.test_sha256.
 */
export async function benchWindows(model: DeqModel, corpusDir?: string): Promise<BenchWindows | null> {
  const m = model.manifest;
  const vocab = model.bundle.vocab;
  if (m.task !== 'language-model' || !m.tokenizer || !vocab) return null;
  const layout = windowScoringOf(m, vocab, { batch: 1, requireConvergence: false });
  const splits = await readBrownSplits(corpusDir ?? brownCorpusDir(), m.tokenizer.eos);
  const ids = encodeStream(splits.test, vocab, Math.max(0, vocab.indexOf(m.tokenizer.unk)));
  const want = (m.provenance?.data as Record<string, unknown> | undefined)?.test_sha256;
  if (typeof want === 'string' && want !== streamSha256(ids)) {
    throw new DeqError('DEQ_ERR_INVALID_INPUT', `${model.name}: the Brown test split read here differs from the one the model was trained with (provenance.data.test_sha256)`);
  }
  return { ids, layout, source: `Brown test split (${ids.length} tokens${corpusDir ? `, ${corpusDir}` : ''})` };
}
