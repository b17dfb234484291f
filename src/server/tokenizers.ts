import { BrownTokenizer } from '../preprocess/tokenizer.js';
import type { TokenizerSpec } from '../runtime/index.js';
import type { ServedModel } from './models.js';

/**
 * What /score needs of a tokenizer: ids, token strings and unk flags, index-aligned,
 * with eos after each sentence and no bos (the scorer prepends it).
 */
export interface TextTokenizer {
  encode(text: string): { ids: Int32Array; tokens: string[]; unk: Uint8Array };
}

export type TokenizerFactory = (vocab: string[], spec: TokenizerSpec) => TextTokenizer;

const brownWords: TokenizerFactory = (vocab, spec) => new BrownTokenizer(vocab, spec);

/** One tokenizer per language model, built on first use. */
export function tokenizerCache(factory: TokenizerFactory = brownWords): (m: ServedModel) => Promise<TextTokenizer> {
  const cache = new Map<string, TextTokenizer>();
  return async (m) => {
    let t = cache.get(m.name);
    if (!t) {
      t = factory(m.vocab ?? [], m.manifest.tokenizer!);
      cache.set(m.name, t);
    }
    return t;
  };
}
