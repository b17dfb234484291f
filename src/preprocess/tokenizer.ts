import { DeqError } from '../errors.js';
import type { TokenizerSpec } from '../runtime/manifest.js';

/** Token ids, surface tokens and unknown-word flags of one text. */
export interface Encoded {
  ids: Int32Array;
  /** Word forms as tokenized (and `</s>` markers), before the vocabulary lookup. */
  tokens: string[];
  /** 1 where the token is not in the vocabulary and was mapped to `<unk>`. */
  unk: Uint8Array;
}

const OPENERS = new Set(['(', '[', '{']);
const TRAILING = new Set([',', ';', ':', '?', '!', ')', ']', '}']);
// Brown puts these after a closing quote: `the city."` → `the city '' .`
const MOVED_PAST_QUOTE = new Set([',', '.', '?', '!', ';', ':']);
const TERMINAL = new Set(['.', '?', '!']);
const INITIALS = /^(?:[A-Za-z]\.)+$/;

/**
 * Splits text into sentences of word forms the way the Brown corpus is tokenized:
 * - double quotes become `` (opening) and '' (closing); curly quotes too;
 * - punctuation , ; : ? ! ( ) [ ] { } and `--` (also — and –) are tokens;
 *   commas and colons inside numbers (1,000 and 9:30) stay, as do `$` and `%`;
 * - clitics and possessives stay attached (`Don't`, `Atlanta's`, `taxpayers'`);
 * - a final period is split off unless the word with its period is known
 *   (`isWord`: `Mr.`, `etc.`; but `No.` only before a lowercase word or number)
 *   or is a run of initials (`U.S.`, `J.`);
 * - a single quote opens a quotation before a word that is not known with it
 *   (`'em` is), and closes one only after such an opening;
 * - `, . ? ! ; :` right before a closing quote move after it, as in Brown;
 * - a sentence ends after `.`, `?` or `!` when the next token starts one (a capital,
 *   a digit, an opening quote or bracket), at a blank line, and at the end of the text.
 */
export function brownSentences(text: string, isWord: (w: string) => boolean = () => false): string[][] {
  const sentences: string[][] = [];
  for (const para of text.normalize('NFC').split(/\n\s*\n/)) {
    const toks = reorderQuotes(wordsOf(normalizeQuotes(para), isWord));
    let cur: string[] = [];
    for (let i = 0; i < toks.length; i++) {
      cur.push(toks[i]);
      if (TERMINAL.has(toks[i])) {
        const next = toks[i + 1];
        if (next === undefined || /^(?:[A-Z0-9'(\[]|``)/.test(next)) { sentences.push(cur); cur = []; }
      }
    }
    if (cur.length > 0) sentences.push(cur);
  }
  return sentences;
}

function normalizeQuotes(s: string): string {
  return s
    .replace(/[\u201C\u201E]/g, ' `` ')
    .replace(/\u201D/g, " '' ")
    .replace(/[\u2018\u2019\u02BC]/g, "'")
    .replace(/[\u2014\u2013]/g, ' -- ')
    .replace(/--+/g, ' -- ')
    // a straight double quote opens at the start, after space or an opening bracket; otherwise it closes
    .replace(/"/g, (_m, off: number, all: string) => (off === 0 || /[\s([{`]/.test(all[off - 1]) ? ' `` ' : " '' "));
}

function wordsOf(s: string, isWord: (w: string) => boolean): string[] {
  const out: string[] = [];
  const chunks = s.split(/\s+/).filter((c) => c !== '');
  // a trailing ' closes a quote only after an opening ' (else it is part of the word: goin', o')
  let openSingle = false;
  for (let ci = 0; ci < chunks.length; ci++) {
    const chunk = chunks[ci];
    if (chunk === '``' || chunk === "''" || chunk === '--') { out.push(chunk); continue; }
    let w = chunk;
    const lead: string[] = [];
    for (;;) {
      if (w.length > 1 && OPENERS.has(w[0])) { lead.push(w[0]); w = w.slice(1); continue; }
      // opening single quote, unless the word is itself known ('em, 'til)
      if (w.length > 1 && w[0] === "'" && !isWord(w) && !isWord(stripTrailing(w))) { lead.push("'"); w = w.slice(1); openSingle = true; continue; }
      break;
    }
    const trail: string[] = [];
    for (;;) {
      if (w.length > 1 && TRAILING.has(w[w.length - 1])) { trail.push(w[w.length - 1]); w = w.slice(0, -1); continue; }
      if (w.length > 1 && w.endsWith("'") && openSingle && !isWord(w)) { trail.push("'"); w = w.slice(0, -1); openSingle = false; continue; }
      if (w.length > 1 && w.endsWith('.') && !INITIALS.test(w) && !(isWord(w) && keepsPeriod(w, chunks[ci + 1], isWord))) { trail.push('.'); w = w.slice(0, -1); continue; }
      break;
    }
    out.push(...lead);
    if (w !== '') out.push(w);
    for (let i = trail.length - 1; i >= 0; i--) out.push(trail[i]);
  }
  return out;
}

// A known abbreviation keeps its period, unless the bare word is also a word and
// the text ends or a new sentence seems to start after it ("No." vs "No. 5").
function keepsPeriod(w: string, next: string | undefined, isWord: (w: string) => boolean): boolean {
  if (!isWord(w.slice(0, -1))) return true;
  return next !== undefined && !/^(?:[A-Z]|``|")/.test(next);
}

function stripTrailing(w: string): string {
  let end = w.length;
  while (end > 1 && (TRAILING.has(w[end - 1]) || w[end - 1] === '.')) end--;
  return w.slice(0, end);
}

function reorderQuotes(toks: string[]): string[] {
  for (let i = toks.length - 2; i >= 0; i--) {
    // walk right-to-left so `?'' ''` chains settle in one pass
    let j = i;
    while (j + 1 < toks.length && MOVED_PAST_QUOTE.has(toks[j]) && toks[j + 1] === "''") {
      [toks[j], toks[j + 1]] = [toks[j + 1], toks[j]];
      j++;
    }
  }
  return toks;
}

/**
 * Brown-corpus word tokenizer over a bundle vocabulary (`brown-words`).
 * Appends the end-of-sentence symbol after every sentence, as in training.
 */
export class BrownTokenizer {
  readonly vocab: readonly string[];
  readonly spec: TokenizerSpec;
  readonly unkId: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly #index: Map<string, number>;

  constructor(vocab: string[], spec: TokenizerSpec) {
    this.vocab = Object.freeze(vocab.slice());
    this.spec = spec;
    // Built once: lookups are the per-token cost.
    this.#index = new Map(vocab.map((w, i) => [w, i]));
    const id = (sym: string, field: string): number => {
      const i = this.#index.get(sym);
      if (i === undefined) throw new RangeError(`vocabulary has no ${field} symbol "${sym}"`);
      return i;
    };
    this.unkId = id(spec.unk, 'unk');
    this.bosId = id(spec.bos, 'bos');
    this.eosId = id(spec.eos, 'eos');
  }

  /** Sentences of word forms, without markers. */
  sentences(text: string): string[][] {
    return brownSentences(text, (w) => this.#index.has(this.#key(w)));
  }

  /** Ids of the text with `eos` after each sentence; `bos` is not included (the scorer prepends it). */
  encode(text: string): Encoded {
    const tokens: string[] = [];
    for (const s of this.sentences(text)) {
      for (const w of s) tokens.push(w);
      tokens.push(this.spec.eos);
    }
    const ids = new Int32Array(tokens.length);
    const unk = new Uint8Array(tokens.length);
    for (let i = 0; i < tokens.length; i++) {
      const id = this.#index.get(this.#key(tokens[i]));
      if (id === undefined) { ids[i] = this.unkId; unk[i] = 1; } else ids[i] = id;
    }
    return { ids, tokens, unk };
  }

  /** The id of a word form, or `unk`. */
  id(word: string): number {
    return this.#index.get(this.#key(word)) ?? this.unkId;
  }

  #key(w: string): string {
    return this.spec.lowercase ? w.toLowerCase() : w;
  }
}

/** What scoring needs of a tokenizer: ids, token strings and unk flags, index-aligned, `eos` after each sentence, no `bos`. */
export interface TextTokenizer {
  readonly vocab: readonly string[];
  readonly spec: TokenizerSpec;
  readonly unkId: number;
  readonly bosId: number;
  readonly eosId: number;
  encode(text: string): Encoded;
}

/**
 * The one tokenizer factory: the tokenizer a bundle's manifest names, over its vocabulary.
 * Throws DEQ_ERR_BUNDLE_INVALID for an unknown kind or a vocabulary without the spec's symbols.
 */
export function createTokenizer(vocab: string[], spec: TokenizerSpec): TextTokenizer {
  if (spec.kind !== 'brown-words') throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `unknown tokenizer kind ${JSON.stringify(spec.kind)}`);
  try {
    return new BrownTokenizer(vocab, spec);
  } catch (err) {
    throw new DeqError('DEQ_ERR_BUNDLE_INVALID', (err as Error).message);
  }
}
