"""The text model's vocabulary: placeholders, frequent sentences and words, characters; rare words are spelled out.

A character model walks a template sentence one letter at a time: a 90-character note is 90 recurrent steps to train
and to sample. Most of a business column's text is a few hundred words that many rows share, so a word used in at
least `min_word_rows` texts is one token (with its leading space, so decoding is concatenation) and every other word is
spelled in characters. Notes shrink to about 20 tokens, the recurrent steps with them, and no word that only a few
writers used becomes a token (a spelled-out word is learned letter by letter, like a character model's). A template
sentence that as many texts share is one token too (`_phrases`): a note of a template column is then about 3 tokens.

Under differential privacy the vocabulary itself is a release. The characters are then the public printable ASCII set
and the words are released by `Vocabulary.private`: each text's first `max_words_per_text` distinct words are counted,
Gaussian noise is added, and a word is kept only above a threshold that a word of a single text passes with
probability below delta (the unknown-domain histogram of Korolova et al. 2009, as `tasks.dp_preprocess` does for
category lists).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

PAD, BOS, EOS, NULL, UNK = "<pad>", "<bos>", "<eos>", "<null>", "<unk>"
SPECIALS = (PAD, BOS, EOS, NULL, UNK)
# Public alphabet for private fits: printable ASCII without the control whitespace a note never needs.
PUBLIC_CHARACTERS = tuple(sorted(set(string.printable) - set("\t\n\r\x0b\x0c")))
_WORD = r"\s?\w+"


@dataclass(frozen=True)
class Vocabulary:
    """Token strings (specials, placeholders, words, characters) and how a text becomes ids and back."""

    tokens: tuple[str, ...]
    placeholders: tuple[str, ...]

    @classmethod
    def learn(
        cls,
        texts: Sequence[str],
        *,
        placeholders: tuple[str, ...],
        min_char_count: int,
        min_word_rows: int,
        max_words: int,
        max_phrases: int = 0,
    ) -> Vocabulary:
        """Characters seen `min_char_count` times, up to `max_words` words used in `min_word_rows` texts, and up to
        `max_phrases` runs of words and marks that as many texts share (`_phrases`)."""
        chunker = _chunker(placeholders)
        chars: Counter[str] = Counter()
        word_rows: Counter[str] = Counter()
        chunked: dict[tuple[str, ...], int] = {}
        for text, k in Counter(texts).items():  # template columns repeat texts: each distinct one is split once
            every = tuple(chunker.findall(text))
            chunked[every] = chunked.get(every, 0) + k
            chunks = [c for c in every if c not in placeholders]
            for ch, n in Counter(ch for chunk in chunks for ch in chunk).items():
                chars[ch] += n * k
            for word in {c for c in chunks if len(c) > 2}:  # a row counts once
                word_rows[word] += k
        kept_chars = sorted(c for c, n in chars.items() if n >= min_char_count)
        frequent = [w for w, n in word_rows.most_common() if n >= max(min_word_rows, 1)][:max_words]
        phrases = _phrases(chunked, max(min_word_rows, 1), max_phrases) if max_phrases else []
        return cls((*SPECIALS, *placeholders, *sorted(phrases), *sorted(frequent), *kept_chars), placeholders)

    @classmethod
    def private(
        cls,
        texts: Sequence[str],
        *,
        placeholders: tuple[str, ...],
        epsilon: float,
        delta: float,
        max_words: int,
        max_words_per_text: int = 16,
        generator: torch.Generator | None = None,
    ) -> Vocabulary:
        """Printable ASCII, the placeholders, and the words whose noisy text counts clear the threshold.

        One text adds at most 1 to each of at most `max_words_per_text` words: L2 sensitivity sqrt of that. Half of
        delta calibrates the Gaussian noise, the other half (split over a text's words) the threshold.
        """
        from scipy.stats import norm

        from synthgate.models.privacy import gaussian_sigma

        chunker = _chunker(placeholders)
        rows: Counter[str] = Counter()
        for text in texts:
            words = dict.fromkeys(c for c in chunker.findall(text) if len(c) > 2 and c not in placeholders)
            rows.update(list(words)[:max_words_per_text])
        sigma = gaussian_sigma(epsilon, delta / 2, sensitivity=math.sqrt(max_words_per_text))
        threshold = 1 + sigma * float(norm.isf(delta / 2 / max_words_per_text))
        names = sorted(rows)  # a fixed order, so the noise a word gets does not depend on the count order
        noise = torch.randn(len(names), generator=generator, dtype=torch.float64) * sigma
        noisy = {w: rows[w] + float(z) for w, z in zip(names, noise, strict=True)}
        kept = sorted((w for w in names if noisy[w] >= threshold), key=lambda w: -noisy[w])[:max_words]
        return cls((*SPECIALS, *placeholders, *sorted(kept), *PUBLIC_CHARACTERS), placeholders)

    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def encode(self, texts: Sequence[str | None], max_tokens: int) -> list[list[int]]:
        """Ids per text: `<null>` alone for a missing value, else tokens then `<eos>` (none when cut at max_tokens).

        Phrases are matched longest first, then words; what neither covers is spelled in characters.
        """
        index = self.index()
        chunker = _chunker(self.placeholders)
        unk, eos, null = index[UNK], index[EOS], index[NULL]
        phrases = {}
        for token, i in index.items():
            run = tuple(chunker.findall(token)) if len(token) > 1 and token not in SPECIALS else ()
            if len(run) > 1:
                phrases[run] = i
        longest = max(map(len, phrases), default=1)
        known: dict[str | None, list[int]] = {None: [null]}  # each distinct text is encoded once
        out = []
        for text in texts:
            if text not in known:
                chunks, ids, at = chunker.findall(text), [], 0
                while at < len(chunks):
                    run = next(
                        (
                            n
                            for n in range(min(longest, len(chunks) - at), 1, -1)
                            if tuple(chunks[at : at + n]) in phrases
                        ),
                        0,
                    )
                    if run:
                        ids.append(phrases[tuple(chunks[at : at + run])])
                        at += run
                        continue
                    hit = index.get(chunks[at])
                    ids += [hit] if hit is not None else [index.get(ch, unk) for ch in chunks[at]]
                    at += 1
                known[text] = ids[:max_tokens] if len(ids) >= max_tokens else [*ids, eos]
            out.append(known[text])
        return out

    def decode(self, ids: Sequence[int]) -> str | None:
        """The text of sampled ids (None when the first is `<null>`), up to the first `<eos>`."""
        if ids and self.tokens[ids[0]] == NULL:
            return None
        out = []
        for i in ids:
            if self.tokens[i] == EOS:
                break
            out.append(self.tokens[i])
        return "".join(out)


MAX_PHRASE_CHUNKS = 64  # longer shared runs are cut into phrases of this many words and marks
_SENTENCE_ENDS = frozenset(".!?")


def _phrases(chunked: dict[tuple[str, ...], int], min_rows: int, limit: int) -> list[str]:
    """Sentences, or their ends, of two or more chunks (words, marks, placeholders) that `min_rows` texts contain.

    Candidates grow one chunk at a time from runs that are frequent already (a run is no more frequent than its
    parts) and never past a sentence's end; texts are then encoded longest run first, and the runs that encoding uses
    in `min_rows` texts are kept, the most used first. A template sentence becomes one token, so a note is a few
    recurrent steps instead of twenty, and the model still composes a text from sentences. Runs that end elsewhere
    (`" and the"` in film titles) stay words: as tokens they made sampled titles' lengths worse
    (docs/decisions.md#text-columns).
    """
    rows: Counter[tuple[str, ...]] = Counter()
    for chunks, k in chunked.items():
        for chunk in set(chunks):
            rows[(chunk,)] += k
    frequent = {g for g, n in rows.items() if n >= min_rows}
    candidates: set[tuple[str, ...]] = set()
    for size in range(2, MAX_PHRASE_CHUNKS + 1):
        rows = Counter()
        for chunks, k in chunked.items():
            grown = {
                chunks[i : i + size]
                for i in range(len(chunks) - size + 1)
                if chunks[i + size - 2] not in _SENTENCE_ENDS  # a phrase ends with its sentence
                and chunks[i : i + size - 1] in frequent
                and chunks[i + 1 : i + size] in frequent
            }
            for g in grown:
                rows[g] += k
        frequent = {g for g, n in rows.items() if n >= min_rows}
        if not frequent:
            break
        candidates |= {g for g in frequent if g[-1] in _SENTENCE_ENDS}
    longest = max(map(len, candidates), default=1)
    used: Counter[tuple[str, ...]] = Counter()
    for chunks, k in chunked.items():
        at, runs = 0, set()
        while at < len(chunks):
            size = next(
                (n for n in range(min(longest, len(chunks) - at), 1, -1) if chunks[at : at + n] in candidates), 1
            )
            if size > 1:
                runs.add(chunks[at : at + size])
            at += size
        for run in runs:
            used[run] += k
    return ["".join(run) for run, n in used.most_common(limit) if n >= min_rows]


def _chunker(placeholders: tuple[str, ...]) -> re.Pattern[str]:
    """Placeholders whole, then words with their leading space, then any single character."""
    alternatives = [re.escape(p) for p in sorted(placeholders, key=len, reverse=True)]
    return re.compile("|".join([*alternatives, _WORD, "."]), re.DOTALL)
