"""The text model's vocabulary: placeholders, frequent words, characters; rare words are spelled out.

A character model walks a template sentence one letter at a time: a 90-character note is 90 recurrent steps to train
and to sample. Most of a business column's text is a few hundred words that many rows share, so a word used in at
least `min_word_rows` texts is one token (with its leading space, so decoding is concatenation) and every other word is
spelled in characters. Notes shrink to about 20 tokens, the recurrent steps with them, and no word that only a few
writers used becomes a token (a spelled-out word is learned letter by letter, like a character model's).

Under differential privacy the vocabulary itself would be a release: there the tokens are the public printable ASCII
characters and the placeholders only, decided before any row is read.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

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
    ) -> Vocabulary:
        """Characters seen `min_char_count` times, and up to `max_words` words used in `min_word_rows` texts."""
        chunker = _chunker(placeholders)
        chars: Counter[str] = Counter()
        word_rows: Counter[str] = Counter()
        for text in texts:
            chunks = chunker.findall(text)
            chars.update(ch for chunk in chunks if chunk not in placeholders for ch in chunk)
            word_rows.update({c for c in chunks if len(c) > 2 and c not in placeholders})  # a row counts once
        kept_chars = sorted(c for c, n in chars.items() if n >= min_char_count)
        frequent = [w for w, n in word_rows.most_common() if n >= max(min_word_rows, 1)][:max_words]
        return cls((*SPECIALS, *placeholders, *sorted(frequent), *kept_chars), placeholders)

    @classmethod
    def public(cls, placeholders: tuple[str, ...]) -> Vocabulary:
        """The data-independent vocabulary of a private fit: printable ASCII and the placeholders."""
        return cls((*SPECIALS, *placeholders, *PUBLIC_CHARACTERS), placeholders)

    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def encode(self, texts: Sequence[str | None], max_tokens: int) -> list[list[int]]:
        """Ids per text: `<null>` alone for a missing value, else tokens then `<eos>` (none when cut at max_tokens)."""
        index = self.index()
        chunker = _chunker(self.placeholders)
        unk, eos, null = index[UNK], index[EOS], index[NULL]
        out = []
        for text in texts:
            if text is None:
                out.append([null])
                continue
            ids: list[int] = []
            for chunk in chunker.findall(text):
                hit = index.get(chunk)
                ids += [hit] if hit is not None else [index.get(ch, unk) for ch in chunk]
            out.append(ids[:max_tokens] if len(ids) >= max_tokens else [*ids, eos])
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


def _chunker(placeholders: tuple[str, ...]) -> re.Pattern[str]:
    """Placeholders whole, then words with their leading space, then any single character."""
    alternatives = [re.escape(p) for p in sorted(placeholders, key=len, reverse=True)]
    return re.compile("|".join([*alternatives, _WORD, "."]), re.DOTALL)
