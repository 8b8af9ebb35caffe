"""Thresholds and drift for anomaly scores: calibrated on rows the model never saw, tested at a stated level.

The threshold is a split-conformal quantile of the holdout's scores (Vovk et al. 2005; Angelopoulos & Bates 2021,
"A Gentle Introduction to Conformal Prediction", sec. 1): with m holdout scores, the ceil((m + 1)(1 - fpr))-th
smallest makes a new row from the same distribution exceed it with probability at most fpr, whatever the model. A
contamination share (PyOD's `threshold_`) instead flags a fixed fraction of every batch, drifted or not.

Drift is declared at family-wise level `alpha`, half for the scores and half shared by the columns (Bonferroni):
- the batch's scores against the holdout's, by a two-sample Kolmogorov-Smirnov test (any change of shape, not only
  a shift), with the KS statistic and P(batch score > holdout score) as effect sizes;
- each column against the reference rows, by KS (numbers) or a chi-square test of the level counts (categories),
  beside the fidelity gate's shape score. A batch of one segment (one species, one region) holds rows that are each
  plausible, so its scores may not move, while the segment's columns do.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.scoring import ColumnDrift, ScoreDrift, Threshold
from synthgate.schemas.table import TableSchema
from synthgate.tasks.distance import NUMERIC_KINDS, category_labels, numeric_values
from synthgate.tasks.fidelity import ks_complement

DEFAULT_ALPHA = 0.01  # family-wise level of the drift verdict: docs/decisions.md#score-drift


def calibrate(holdout_scores: np.ndarray, fpr: float) -> Threshold:
    """The split-conformal threshold at `fpr` from the holdout's scores.

    When the holdout is too small for `fpr` (fewer than 1 / fpr - 1 rows), the largest holdout score is used and
    `fpr_bound` says the rate it guarantees instead, 1 / (m + 1).

    Raises:
        InvalidInputError: `fpr` outside (0, 1), or no holdout score.
    """
    if not 0 < fpr < 1:
        raise InvalidInputError(f"--fpr must be between 0 and 1 (exclusive), got {fpr}")
    scores = np.sort(np.asarray(holdout_scores, dtype=np.float64))
    scores = scores[~np.isnan(scores)]  # +inf stays: a row breaking a rule is above every threshold
    m = scores.size
    if m == 0:
        raise InvalidInputError("no holdout rows to calibrate the threshold on; pass --reference with unseen rows")
    rank = min(math.ceil((m + 1) * (1 - fpr)), m)
    return Threshold(value=float(scores[rank - 1]), fpr=fpr, fpr_bound=(m + 1 - rank) / (m + 1), n_holdout=m, rank=rank)


def score_drift(batch: np.ndarray, holdout: np.ndarray, *, alpha: float) -> ScoreDrift:
    """Two-sample KS test of batch against holdout scores, with the KS statistic and the AUC as effect sizes."""
    batch = np.asarray(batch, dtype=np.float64)
    holdout = np.asarray(holdout, dtype=np.float64)
    test = stats.ks_2samp(batch, holdout)
    u = stats.mannwhitneyu(batch, holdout).statistic  # counts batch > holdout pairs, ties half
    auc = float(u) / (batch.size * holdout.size)
    return ScoreDrift(
        p_value=float(test.pvalue), ks_statistic=float(test.statistic), auc=auc, alpha=alpha,
        drifted=bool(test.pvalue < alpha),
    )  # fmt: skip


def label_counts(series: pd.Series) -> pd.Series:
    """Counts per `category_labels` label, from the column's distinct values: a million rows are hashed once, and
    only their few distinct values are turned into labels."""
    counts = series.value_counts(dropna=False)
    return counts.groupby(category_labels(counts.index.to_series()), sort=False).sum()


def tv_from_counts(real: pd.Series, synthetic: pd.Series) -> float:
    """`fidelity.tv_complement` from label counts."""
    if real.sum() == 0 or synthetic.sum() == 0:
        return 0.0
    p, q = (real / real.sum()).align(synthetic / synthetic.sum(), fill_value=0.0)
    return float(1.0 - 0.5 * np.abs(p - q).sum())


def _chi2_p(batch: pd.Series, reference: pd.Series) -> float:
    counts = pd.concat([batch, reference], axis=1).fillna(0).to_numpy()
    counts = counts[counts.sum(1) > 0]
    if counts.shape[0] < 2:
        return 1.0
    return float(stats.chi2_contingency(counts).pvalue)


def _ks_p(batch: np.ndarray, reference: np.ndarray) -> float:
    b, r = batch[np.isfinite(batch)], reference[np.isfinite(reference)]
    if b.size == 0 or r.size == 0:
        return 1.0
    return float(stats.ks_2samp(b, r).pvalue)


def column_drift(
    batch: pd.DataFrame, reference: pd.DataFrame, schema: TableSchema, *, alpha: float
) -> list[ColumnDrift]:
    """Each modelled column of `batch` against `reference`: shape score (as `fidelity.column_shapes`) and a test at
    `alpha` / columns. Each column is read once for both: its numbers, or its label counts.

    Returns:
        One `ColumnDrift` per modelled column, the most moved (lowest p-value) first.
    """
    cols = [c for c in schema.modelled if c.name in batch.columns and c.name in reference.columns]
    level = alpha / max(len(cols), 1)
    out = []
    for col in cols:
        if col.kind in NUMERIC_KINDS:
            b, r = numeric_values(batch[col.name], col), numeric_values(reference[col.name], col)
            shape, p, test = ks_complement(r, b), _ks_p(b, r), "ks"
        else:
            b, r = label_counts(batch[col.name]), label_counts(reference[col.name])
            shape, p, test = tv_from_counts(r, b), _chi2_p(b, r), "chi2"
        out.append(ColumnDrift(column=col.name, shape=shape, p_value=p, test=test, moved=p < level))
    return sorted(out, key=lambda c: c.p_value)
