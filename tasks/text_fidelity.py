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
from scipy import sparse
from scipy.stats import ks_2samp

from synthgate.tasks.text_memory import words


def _weighted(texts: Counter[str], units: Any) -> Counter[Any]:
    """Units (words or word pairs) of every text, each distinct text split once and counted as often as it occurs."""
    counts: Counter[Any] = Counter()
    for text, k in texts.items():
        if k == 1:
            counts.update(units(text))
            continue
        for unit in units(text):
            counts[unit] += k
    return counts


def text_fidelity(holdout: list[str | None], synthetic: list[str | None]) -> dict[str, Any]:
    """Length KS statistic, vocabulary overlap and word-bigram distance of `synthetic` against `holdout`."""
    real = Counter(t for t in holdout if isinstance(t, str))
    fake = Counter(t for t in synthetic if isinstance(t, str))
    if not real or not fake:
        return {"length_ks": None, "vocabulary_overlap": None, "bigram_distance": None}
    length_ks = float(ks_2samp([len(t) for t in real.elements()], [len(t) for t in fake.elements()]).statistic)
    real_words = _weighted(real, words)
    fake_vocab = {w for t in fake for w in words(t)}
    overlap = sum(c for w, c in real_words.items() if w in fake_vocab) / max(sum(real_words.values()), 1)
    a, b = _weighted(real, lambda t: pairwise(words(t))), _weighted(fake, lambda t: pairwise(words(t)))
    na, nb = max(sum(a.values()), 1), max(sum(b.values()), 1)
    distance = 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in a.keys() | b.keys())
    return {
        "length_ks": round(length_ks, 4),
        "vocabulary_overlap": round(overlap, 4),
        "bigram_distance": round(distance, 4),
    }


MIN_LEVEL_TEXTS = 20  # fewer texts of a level on either side: its word shares are too noisy to compare
MAX_LEVELS = 20  # columns with more levels are not read as categories here


def _word_matrices(*sides: Sequence[str | None]) -> list[sparse.csr_matrix]:
    """Per side, its rows' word counts as a sparse (rows, words) matrix over one word index (rows without text empty).

    Template columns repeat a few texts thousands of times: each distinct text is split into words once.
    """
    index: dict[str, int] = {}
    tables = []
    for texts in sides:
        distinct = {t: i for i, t in enumerate(dict.fromkeys(t for t in texts if isinstance(t, str)))}
        entries = [
            (i, index.setdefault(w, len(index)), n) for t, i in distinct.items() for w, n in Counter(words(t)).items()
        ]
        tables.append((texts, distinct, entries))
    out = []
    for texts, distinct, entries in tables:
        rows, cols, vals = zip(*entries, strict=True) if entries else ((), (), ())
        empty = len(distinct)  # rows without text point at this empty row
        per_text = sparse.csr_matrix((vals, (rows, cols)), shape=(empty + 1, max(len(index), 1)))
        out.append(per_text[[distinct[t] if isinstance(t, str) else empty for t in texts]])
    return out


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """One minus the total variation distance of two word-count vectors."""
    return 1.0 - 0.5 * float(np.abs(a / max(a.sum(), 1) - b / max(b.sum(), 1)).sum())


def _by_level(
    real: sparse.csr_matrix,
    real_rows: np.ndarray,
    fake: sparse.csr_matrix,
    fake_rows: np.ndarray,
    real_levels: pd.Series,
    fake_levels: np.ndarray,
) -> dict[str, tuple[int, float]]:
    """Per level with enough texts on both sides: (holdout texts of the level, word similarity of the two sides)."""
    out = {}
    real_values = real_levels.to_numpy()
    for level in pd.unique(real_levels.dropna()):
        on_real, on_fake = (real_values == level) & real_rows, (fake_levels == level) & fake_rows
        if on_real.sum() >= MIN_LEVEL_TEXTS and on_fake.sum() >= MIN_LEVEL_TEXTS:
            a, b = real.T @ on_real.astype(float), fake.T @ on_fake.astype(float)  # word counts of the level's texts
            out[str(level)] = (int(on_real.sum()), _similarity(b, a))
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
    order = np.random.default_rng(seed).permutation(len(synthetic_texts))
    real, fake = _word_matrices(holdout_texts, synthetic_texts)
    real_rows = np.array([isinstance(t, str) for t in holdout_texts], dtype=bool)
    fake_rows = np.array([isinstance(t, str) for t in synthetic_texts], dtype=bool)
    shuffled, shuffled_rows = fake[order], fake_rows[order]
    per_column: dict[str, Any] = {}
    for col in columns:
        if col not in holdout or col not in synthetic or holdout[col].nunique() > MAX_LEVELS:
            continue
        levels = synthetic[col].to_numpy()
        kept = _by_level(real, real_rows, fake, fake_rows, holdout[col], levels)
        if len(kept) < 2:
            continue
        base = _by_level(real, real_rows, shuffled, shuffled_rows, holdout[col], levels)
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
