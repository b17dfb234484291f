import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readFashionMnist } from '../../src/eval/fashion-mnist.js';
import { DeqError } from '../../src/errors.js';
import { FASHION_MNIST_SLICE } from '../helpers/fixtures.js';

function idx(dims: number[], body: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head[2] = 0x08;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return gzipSync(Buffer.concat([head, body]));
}

describe('readFashionMnist', () => {
  it('reads the shipped slice of the test split: 1,000 28×28 images, every class present', async () => {
    const set = await readFashionMnist('test', FASHION_MNIST_SLICE);
    expect(set.count).toBe(1000);
    expect([set.rows, set.cols]).toEqual([28, 28]);
    expect(set.images.length).toBe(1000 * 784);
    const perClass = new Array(10).fill(0);
    for (const l of set.labels) perClass[l]++;
    // Counts of the first 1,000 test labels, read once from Debian's full set.
    expect(perClass).toEqual([107, 105, 111, 93, 115, 87, 97, 95, 95, 95]);
    // The first test image is an ankle boot (label 9), as in every Fashion-MNIST copy.
    expect(set.labels[0]).toBe(9);
  });

  it('parses IDX files and rejects inconsistent ones', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'idx-'));
    try {
      await writeFile(join(dir, 't10k-images-idx3-ubyte.gz'), idx([2, 2, 2], Uint8Array.of(0, 1, 2, 3, 4, 5, 6, 7)));
      await writeFile(join(dir, 't10k-labels-idx1-ubyte.gz'), idx([2], Uint8Array.of(3, 9)));
      const set = await readFashionMnist('test', dir);
      expect(set.count).toBe(2);
      expect(Array.from(set.images)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      expect(Array.from(set.labels)).toEqual([3, 9]);
      await writeFile(join(dir, 't10k-labels-idx1-ubyte.gz'), idx([3], Uint8Array.of(3, 9, 1)));
      await expect(readFashionMnist('test', dir)).rejects.toThrow(/2 images but 3 labels/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the Debian package when the files are missing', async () => {
    const err = await readFashionMnist('test', '/nonexistent').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeqError);
    expect((err as DeqError).message).toContain('apt-get install -y dataset-fashion-mnist');
  });
});
