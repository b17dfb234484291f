import { beforeAll, describe, expect, it } from 'vitest';
import { brownCorpusDir, buildBrownVocab, readBrownSplits, streamSha256, type BrownSplits } from '../../src/eval/brown-corpus.js';
import { BrownTokenizer, brownSentences } from '../../src/preprocess/tokenizer.js';
import type { TokenizerSpec } from '../../src/runtime/manifest.js';

const SPEC: TokenizerSpec = { kind: 'brown-words', vocab_file: 'vocab.json', sha256: '', unk: '<unk>', bos: '<s>', eos: '</s>', lowercase: false, context: 16 };
const KNOWN = new Set(['Mr.', 'Mrs.', 'etc.', "'em", "taxpayers'"]);
const words = (text: string) => brownSentences(text, (w) => KNOWN.has(w));

describe('brownSentences: Brown tokenization of free text', () => {
  it('splits the issue example the way Brown does (quotes as `` and \'\', comma moved past the closing quote)', () => {
    expect(words('"Don\'t panic," she said.')).toEqual([['``', "Don't", 'panic', "''", ',', 'she', 'said', '.']]);
  });

  it('moves . ? ! ; : after a closing quote, and keeps a question inside quotes in its sentence', () => {
    expect(words('He asked, "Why?" and left.')).toEqual([['He', 'asked', ',', '``', 'Why', "''", '?', 'and', 'left', '.']]);
    expect(words('They called it "the city."')).toEqual([['They', 'called', 'it', '``', 'the', 'city', "''", '.']]);
  });

  it('handles curly quotes, dashes and brackets', () => {
    expect(words('\u201CHello,\u201D she said\u2014twice (or so).')).toEqual([
      ['``', 'Hello', "''", ',', 'she', 'said', '--', 'twice', '(', 'or', 'so', ')', '.'],
    ]);
    expect(words('wait--no, 1860 - 70')).toEqual([['wait', '--', 'no', ',', '1860', '-', '70']]);
  });

  it('keeps clitics, possessives, numbers, money, percentages, abbreviations and initials whole', () => {
    expect(words("Mr. Smith's taxpayers' $1,000 at 9:30 isn't 15% of the U.S. budget, etc.")).toEqual([
      ['Mr.', "Smith's", "taxpayers'", '$1,000', 'at', '9:30', "isn't", '15%', 'of', 'the', 'U.S.', 'budget', ',', 'etc.'],
    ]);
  });

  it('splits single quotes used as quotation marks but not known apostrophe words', () => {
    expect(words("She said 'no' to 'em.")).toEqual([['She', 'said', "'", 'no', "'", 'to', "'em", '.']]);
  });

  it('ends sentences at . ? ! before a capital, at blank lines and at the end of the text', () => {
    expect(words('Really?! no.')).toEqual([['Really', '?', '!', 'no', '.']]);
    expect(words('It rained. We stayed in! Did you?')).toEqual([['It', 'rained', '.'], ['We', 'stayed', 'in', '!'], ['Did', 'you', '?']]);
    expect(words('"Why?" he asked.')).toEqual([['``', 'Why', "''", '?', 'he', 'asked', '.']]);
    expect(words('first part\n\nsecond part')).toEqual([['first', 'part'], ['second', 'part']]);
    expect(words('   ')).toEqual([]);
  });
});

describe('BrownTokenizer', () => {
  const vocab = ['<unk>', '<s>', '</s>', 'the', 'cat', 'sat', '.', ',', 'The'];
  const tok = new BrownTokenizer(vocab, SPEC);

  it('adds </s> after every sentence and flags unknown words', () => {
    const e = tok.encode('The cat sat. The dog sat.');
    expect(e.tokens).toEqual(['The', 'cat', 'sat', '.', '</s>', 'The', 'dog', 'sat', '.', '</s>']);
    expect(Array.from(e.ids)).toEqual([8, 4, 5, 6, 2, 8, 0, 5, 6, 2]);
    expect(Array.from(e.unk)).toEqual([0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
  });

  it('is case-sensitive unless the spec says lowercase', () => {
    expect(tok.id('THE')).toBe(0);
    expect(new BrownTokenizer(vocab, { ...SPEC, lowercase: true }).id('CAT')).toBe(4);
  });

  it('rejects a vocabulary without its special symbols', () => {
    expect(() => new BrownTokenizer(['a', 'b'], SPEC)).toThrow(RangeError);
  });
});

describe('Brown corpus split (must match models/recipes/brown.py)', () => {
  let splits: BrownSplits;
  let vocab: string[];
  beforeAll(async () => {
    splits = await readBrownSplits(brownCorpusDir());
    vocab = buildBrownVocab(splits.train);
  }, 60_000);

  it('has the Bengio et al. word counts and the vocabulary size the recipe reports', () => {
    const wordsIn = (s: string[]) => s.filter((t) => t !== '</s>').length;
    expect(wordsIn(splits.train)).toBe(800_000);
    expect(wordsIn(splits.valid)).toBe(200_000);
    expect(wordsIn(splits.test)).toBe(161_192);
    expect(splits.train.length).toBe(835_522);
    expect(vocab.length).toBe(14_116);
    expect(vocab.slice(0, 6)).toEqual(['<unk>', '<s>', '</s>', 'the', ',', '.']);
  });

  it('gives the same id streams as the Python recipe (sha256 recorded by brown.py)', async () => {
    const { encodeStream } = await import('../../src/eval/brown-corpus.js');
    expect(streamSha256(encodeStream(splits.valid, vocab))).toBe('3df72194d3e198369f0b30a4ce6dc7c63bad8799fe5d378831ed358cf95aa2d0');
    expect(streamSha256(encodeStream(splits.test, vocab))).toBe('f4309e0827276fd4f5bad44cc37ec4abd6e4e85920011877ed5f7f0f361fe3ca');
  });

  it('re-tokenizes Brown sentences written as plain text into the same tokens', () => {
    const known = new Set(vocab);
    // every validation sentence, detokenized the way it would be typed
    const sents: string[][] = [];
    let cur: string[] = [];
    for (const t of splits.valid) {
      if (t === '</s>') { sents.push(cur); cur = []; } else cur.push(t);
    }
    let same = 0, oneSentence = 0;
    for (const s of sents) {
      const text = s.join(' ').replace(/`` /g, '"').replace(/ ''/g, '"').replace(/ ([,.;:?!)])/g, '$1').replace(/\( /g, '(');
      const got = brownSentences(text, (w) => known.has(w));
      if (got.flat().join(' ') === s.join(' ')) same++;
      if (got.length === 1) oneSentence++;
    }
    // whole validation split: 99.4% token-identical, 99.9% one sentence (docs/results/brown.md)
    expect(same / sents.length).toBeGreaterThan(0.99);
    expect(oneSentence / sents.length).toBeGreaterThan(0.99);
  });
});
