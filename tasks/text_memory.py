"""How much of the training text a synthetic text column repeats, against what unseen real text repeats anyway.

Two figures per text column, each measured twice: for the synthetic texts and for the holdout's texts, both against
the training texts. A column of templates has high rates for both (every row opens with the same sentence, which is
not copying); a model that reproduces rare training sentences has rates well above the holdout's.

- exact share: texts equal to some training text;
- longest shared n-gram: per text, the most consecutive words it shares with one training text (median, 95th
  percentile and maximum over texts).

Information only: no gate refuses on them until thresholds are calibrated on real columns.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

_WORD = re.compile(r"\w+|[^\w\s]")
MAX_NGRAM = 64  # longer shared runs count as 64: the figure already says "copied a paragraph"


def words(text: str) -> list[str]:
    """Lower-case words and punctuation marks, the units of the n-gram figures."""
    return _WORD.findall(text.lower())


def longest_shared_ngrams(texts: list[str], train: list[str], *, max_n: int = MAX_NGRAM) -> np.ndarray:
    """Per text, the length in words of the longest run it shares with a single training text.

    Grows n one at a time and keeps only the texts that still share an n-gram, so the cost follows the shared length,
    not every n up to `max_n`. An n-gram is a run inside one text, so "shared with a single training text" holds.
    Texts repeat in template columns, so each distinct text is split and measured once.
    """
    train_words = list({tuple(words(t)) for t in dict.fromkeys(train)})
    distinct = {t: tuple(words(t)) for t in dict.fromkeys(texts)}
    best = dict.fromkeys(distinct.values(), 0)
    alive = [w for w in best if w]
    for n in range(1, max_n + 1):
        if not alive:
            break
        grams = {w[j : j + n] for w in train_words for j in range(len(w) - n + 1)}
        still = []
        for w in alive:
            if any(w[j : j + n] in grams for j in range(len(w) - n + 1)):
                best[w] = n
                still.append(w)
        alive = still
    return np.array([best[distinct[t]] for t in texts], dtype=int)


def memorisation(
    train: list[str | None], holdout: list[str | None], synthetic: list[str | None], *, max_n: int = MAX_NGRAM
) -> dict[str, Any]:
    """Exact-copy share and longest shared n-gram of the synthetic texts, beside the holdout's own rates.

    Args:
        train: the training split's texts (as the model saw them, placeholders included).
        holdout: the holdout's texts, scrubbed the same way.
        synthetic: the sampled texts before their placeholders are filled.

    Returns:
        A flat dict of figures for the gate details and the report.
    """
    train_texts = [t for t in train if isinstance(t, str)]
    seen = set(train_texts)
    out: dict[str, Any] = {}
    for name, texts in (("synthetic", synthetic), ("holdout", holdout)):
        kept = [t for t in texts if isinstance(t, str)]
        runs = longest_shared_ngrams(kept, train_texts, max_n=max_n) if kept else np.zeros(0, dtype=int)
        out[f"{name}_exact_share"] = round(float(np.mean([t in seen for t in kept])), 4) if kept else None
        out[f"{name}_ngram_median"] = float(np.median(runs)) if runs.size else None
        out[f"{name}_ngram_p95"] = float(np.percentile(runs, 95)) if runs.size else None
        out[f"{name}_ngram_max"] = int(runs.max()) if runs.size else None
    return out
