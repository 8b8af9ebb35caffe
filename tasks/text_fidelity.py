"""How close a synthetic text column is to the holdout's: lengths, vocabulary and word pairs (information only).

Three figures, each against the holdout's texts (not the training texts, which the model saw):

- length KS: the two-sample Kolmogorov-Smirnov statistic of the texts' lengths in characters (0: same distribution);
- vocabulary overlap: the share of the holdout's word occurrences whose word the synthetic texts use;
- bigram distance: total variation distance between the word-pair frequencies (0: same, 1: disjoint).
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from typing import Any

from scipy.stats import ks_2samp

from synthgate.tasks.text_memory import words


def _bigrams(texts: list[str]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for text in texts:
        w = words(text)
        counts.update(pairwise(w))
    return counts


def text_fidelity(holdout: list[str | None], synthetic: list[str | None]) -> dict[str, Any]:
    """Length KS statistic, vocabulary overlap and word-bigram distance of `synthetic` against `holdout`."""
    real = [t for t in holdout if isinstance(t, str)]
    fake = [t for t in synthetic if isinstance(t, str)]
    if not real or not fake:
        return {"length_ks": None, "vocabulary_overlap": None, "bigram_distance": None}
    length_ks = float(ks_2samp([len(t) for t in real], [len(t) for t in fake]).statistic)
    real_words = Counter(w for t in real for w in words(t))
    fake_vocab = {w for t in fake for w in words(t)}
    overlap = sum(c for w, c in real_words.items() if w in fake_vocab) / max(sum(real_words.values()), 1)
    a, b = _bigrams(real), _bigrams(fake)
    na, nb = max(sum(a.values()), 1), max(sum(b.values()), 1)
    distance = 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in a.keys() | b.keys())
    return {
        "length_ks": round(length_ks, 4),
        "vocabulary_overlap": round(overlap, 4),
        "bigram_distance": round(distance, 4),
    }
