import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFashionMnist } from '../../src/eval/fashion-mnist.js';
import { evalFashionMnist, type ModelReport } from '../../src/eval/image-eval.js';
import { FASHION_MNIST_SLICE } from '../helpers/fixtures.js';

const JR = resolve(import.meta.dirname, '..', '..', 'models', 'fashion-mnist-jr');
const IMAGES = 48;

describe('eval --dataset fashion-mnist: accuracy against NFE and the train-test gap', () => {
  let dir: string;
  let report: ModelReport;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'image-eval-'));
    // A data folder whose "train" split is the test slice itself: train accuracy must then equal
    // test accuracy on the same images, which checks that the train set is scored like the test set.
    for (const kind of ['images-idx3', 'labels-idx1']) {
      await copyFile(join(FASHION_MNIST_SLICE, `t10k-${kind}-ubyte.gz`), join(dir, `t10k-${kind}-ubyte.gz`));
      await copyFile(join(FASHION_MNIST_SLICE, `t10k-${kind}-ubyte.gz`), join(dir, `train-${kind}-ubyte.gz`));
    }
    [report] = await evalFashionMnist([JR], {
      limit: IMAGES, tols: [1e-3], sweepMode: 'rel', batch: 16, latencyImages: 2, traceImages: 4,
      solver: {}, session: { intraOpThreads: 1 }, out: join(dir, 'report.md'), dataDir: dir,
      nfeCaps: [1, 2, 30], trainImages: IMAGES,
    });
  }, 120_000);
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('scores the head at z₀ for cap 1: every image gets the same class', async () => {
    const set = await readFashionMnist('test', FASHION_MNIST_SLICE);
    const perClass = new Array(10).fill(0);
    for (let i = 0; i < IMAGES; i++) perClass[set.labels[i]]++;
    expect(report.nfeCurve.map((c) => c.cap)).toEqual([1, 2, 30]);
    // z₀ = 0 for every image, so head(z₀) is one class c, and accuracy is c's share of the labels
    expect(perClass).toContain(Math.round(report.nfeCurve[0].accuracy * IMAGES));
    // and one application of f already classifies most images of a trained model
    expect(report.nfeCurve[1].accuracy).toBeGreaterThan(report.nfeCurve[0].accuracy + 0.3);
  });

  it('agrees with the default solve when the cap is the default cap', () => {
    // no early stop at cap 30 moves a converged answer by less than the tolerance: same top-1 nearly everywhere
    expect(Math.abs(report.nfeCurve[2].accuracy - report.full.accuracy)).toBeLessThanOrEqual(1 / IMAGES);
  });

  it('scores training images with the defaults', () => {
    expect(report.train).toEqual({ images: IMAGES, accuracy: report.full.accuracy });
  });

  it('writes the curve as a table and a plot', async () => {
    const md = await readFile(join(dir, 'report.md'), 'utf8');
    expect(md).toContain('## Accuracy against evaluations of f');
    expect(md).toMatch(/\| model \| 1 \| 2 \| 30 \| converged \(defaults\) \|\n\|---\|---\|---\|---\|---\|/);
    expect(md).toContain('## Train-test gap');
    const svg = await readFile(join(dir, 'report-accuracy-nfe.svg'), 'utf8');
    expect(svg).toMatch(/^<svg /);
    expect(svg).toContain('fashion-mnist-jr');
  });
});
