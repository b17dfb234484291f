import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DeqError } from '../errors.js';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export interface ImageSet {
  count: number;
  rows: number;
  cols: number;
  /** count × rows × cols grayscale bytes. */
  images: Uint8Array;
  labels: Uint8Array;
}

/** Reads the Fashion-MNIST test (or train) split from Debian's dataset-fashion-mnist IDX files. */
export async function readFashionMnist(split: 'test' | 'train', dir = FASHION_MNIST_DIR): Promise<ImageSet> {
  const prefix = split === 'test' ? 't10k' : 'train';
  const images = await readIdx(join(dir, `${prefix}-images-idx3-ubyte.gz`), 3);
  const labels = await readIdx(join(dir, `${prefix}-labels-idx1-ubyte.gz`), 1);
  if (images.dims[0] !== labels.dims[0]) throw new DeqError('DEQ_ERR_INVALID_INPUT', `${dir}: ${images.dims[0]} images but ${labels.dims[0]} labels`);
  return { count: images.dims[0], rows: images.dims[1], cols: images.dims[2], images: images.data, labels: labels.data };
}

async function readIdx(path: string, rank: number): Promise<{ dims: number[]; data: Uint8Array }> {
  let raw: Buffer;
  try {
    raw = gunzipSync(await readFile(path));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new DeqError('DEQ_ERR_CONFIG_INVALID', `${path} not found: install Fashion-MNIST with \`apt-get install -y dataset-fashion-mnist\``);
    }
    throw new DeqError('DEQ_ERR_INVALID_INPUT', `${path}: cannot read IDX file (${(err as Error).message})`);
  }
  // IDX: two zero bytes, type 0x08 (unsigned byte), rank, then big-endian dims.
  if (raw[0] !== 0 || raw[1] !== 0 || raw[2] !== 0x08 || raw[3] !== rank) throw new DeqError('DEQ_ERR_INVALID_INPUT', `${path}: not a rank-${rank} uint8 IDX file`);
  const dims = Array.from({ length: rank }, (_, i) => raw.readUInt32BE(4 + 4 * i));
  const offset = 4 + 4 * rank;
  const size = dims.reduce((a, b) => a * b, 1);
  if (raw.length !== offset + size) throw new DeqError('DEQ_ERR_INVALID_INPUT', `${path}: size does not match its header`);
  return { dims, data: new Uint8Array(raw.buffer, raw.byteOffset + offset, size) };
}
