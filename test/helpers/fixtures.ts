import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const FIXTURES = resolve(import.meta.dirname, '..', 'fixtures');
export const TINY_IMAGE = join(FIXTURES, 'tiny-image');
export const TINY_LM = join(FIXTURES, 'tiny-lm');
/** The first 1,000 Fashion-MNIST test images and labels (IDX, gzipped): tests need no system package. */
export const FASHION_MNIST_SLICE = join(FIXTURES, 'fashion-mnist');

/** Copies a fixture bundle into a fresh temp folder that the caller may damage. */
export async function scratchCopy(bundle: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'deq-test-'));
  const dir = join(root, 'bundle');
  await cp(bundle, dir, { recursive: true });
  return { dir, cleanup: () => rm(root, { recursive: true, force: true }) };
}
