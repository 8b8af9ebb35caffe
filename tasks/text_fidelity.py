"""How close a synthetic text column is to the holdout's: lengths, vocabulary and word pairs (information only).

Three figures, each against the holdout's texts (not the training texts, which the model saw):

- length KS: the two-sample Kolmogorov-Smirnov statistic of the texts' lengths in characters (0: same distribution);
- vocabulary overlap: the share of the holdout's word occurrences whose word the synthetic texts use;
- bigram distance: total variation distance between the word-pair frequencies (0: same, 1: disjoint).

And how the text follows the other columns (`category_similarity`): per level of each categorical column, one minus
the total variation distance between the words of the synthetic and the holdout texts on rows of that level, beside the
same figure with the synthetic texts shuffled over the rows (what a text model that ignores the row would score).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
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


MIN_LEVEL_TEXTS = 20  # fewer texts of a level on either side: its word shares are too noisy to compare
MAX_LEVELS = 20  # columns with more levels are not read as categories here


def _word_shares(texts: Sequence[str]) -> Counter[str]:
    return Counter(w for t in texts for w in words(t))


def _similarity(a: Counter[str], b: Counter[str]) -> float:
    na, nb = max(sum(a.values()), 1), max(sum(b.values()), 1)
    return 1.0 - 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in a.keys() | b.keys())


def _by_level(texts: list[str | None], levels: pd.Series, real: pd.Series, real_texts: list[str | None]) -> dict:
    out = {}
    for level in pd.unique(real.dropna()):
        real_part = [t for t, v in zip(real_texts, real, strict=True) if v == level and isinstance(t, str)]
        fake_part = [t for t, v in zip(texts, levels, strict=True) if v == level and isinstance(t, str)]
        if len(real_part) >= MIN_LEVEL_TEXTS and len(fake_part) >= MIN_LEVEL_TEXTS:
            out[str(level)] = (len(real_part), _similarity(_word_shares(fake_part), _word_shares(real_part)))
    return out


def category_similarity(
    holdout: pd.DataFrame,
    holdout_texts: list[str | None],
    synthetic: pd.DataFrame,
    synthetic_texts: list[str | None],
    columns: Sequence[str],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Per categorical column, the level-weighted word similarity of the synthetic texts to the holdout's texts of
    the same level, and the same with the synthetic texts shuffled over the rows.

    A text model that carries the row's category scores above its shuffled figure; one that ignores the row scores
    the same. Levels with fewer than `MIN_LEVEL_TEXTS` texts on either side are left out.

    Returns:
        `{"similarity": mean over columns, "shuffled": mean over columns, "columns": {col: {...}}}`; the means are None
        when no column has two comparable levels.
    """
    shuffled = list(np.random.default_rng(seed).permutation(np.array(synthetic_texts, dtype=object)))
    per_column: dict[str, Any] = {}
    for col in columns:
        if col not in holdout or col not in synthetic or holdout[col].nunique() > MAX_LEVELS:
            continue
        kept = _by_level(synthetic_texts, synthetic[col], holdout[col], holdout_texts)
        if len(kept) < 2:
            continue
        base = _by_level(shuffled, synthetic[col], holdout[col], holdout_texts)
        weights = {k: n for k, (n, _) in kept.items()}
        total = sum(weights.values())
        per_column[col] = {
            "similarity": round(sum(weights[k] * s for k, (_, s) in kept.items()) / total, 4),
            "shuffled": round(sum(weights[k] * base[k][1] for k in kept if k in base) / total, 4),
            "levels": {k: round(s, 4) for k, (_, s) in kept.items()},
        }
    if not per_column:
        return {"similarity": None, "shuffled": None, "columns": {}}
    return {
        "similarity": round(float(np.mean([c["similarity"] for c in per_column.values()])), 4),
        "shuffled": round(float(np.mean([c["shuffled"] for c in per_column.values()])), 4),
        "columns": per_column,
    }
