import { DeqError } from '../errors.js';
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

// NOTE: src/preprocess/tokenizer.ts is written in parallel with the server; it is
// loaded by a computed specifier so the server builds and runs (classify, v2)
// before it lands. Switch to a static import once it has.
const TOKENIZER_MODULE = '../preprocess/tokenizer.js';

async function defaultFactory(): Promise<TokenizerFactory> {
  try {
    const mod = (await import(TOKENIZER_MODULE)) as { BrownTokenizer: new (vocab: string[], spec: TokenizerSpec) => TextTokenizer };
    return (vocab, spec) => new mod.BrownTokenizer(vocab, spec);
  } catch (err) {
    throw new DeqError('DEQ_ERR_INTERNAL', `the brown-words tokenizer is not available (${(err as Error).message.split('\n')[0]})`);
  }
}

/** One tokenizer per language model, built on first use. */
export function tokenizerCache(factory?: TokenizerFactory): (m: ServedModel) => Promise<TextTokenizer> {
  const cache = new Map<string, Promise<TextTokenizer>>();
  return (m) => {
    let t = cache.get(m.name);
    if (!t) {
      t = (async () => (factory ?? (await defaultFactory()))(m.vocab ?? [], m.manifest.tokenizer!))();
      t.catch(() => cache.delete(m.name));
      cache.set(m.name, t);
    }
    return t;
  };
}
