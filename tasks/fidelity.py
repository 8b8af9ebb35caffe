"""Fidelity metrics: how much the synthetic table looks like the real one, measured against the holdout split.

Each metric is a plain function over pandas frames and the `TableSchema`, using only `schema.modelled` columns, and
returns a score in [0, 1] where higher means more alike (detection AUC: lower is better, 0.5 is indistinguishable)
together with the per-column or per-pair detail the report shows. The metrics are hand-written (they are what the
gates stand on); scikit-learn is used only for the classifiers in detection and machine-learning utility.

Why several metrics: an independent-marginals sampler keeps every column shape near perfect while destroying the
joint structure, so shapes alone prove nothing; pair trends see the pairwise joint, a classifier two-sample test
sees any joint difference it can learn, and ML utility sees whether the relations to a target survived.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import f1_score, r2_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from synthgate.schemas.table import ColumnSchema, TableSchema
from synthgate.tasks.distance import NUMERIC_KINDS, category_labels, numeric_values
from synthgate.tasks.giveaways import find_giveaways

logger = logging.getLogger(__name__)

# Quantile bins for a numeric column paired with a categorical one (missing gets its own bin): up to MAX_BINS, with at
# least ROWS_PER_BIN real rows per bin, and never fewer than MIN_BINS. On a 69-row holdout five bins crossed with three
# species leave ~5 rows per cell, and sampling noise alone then costs a perfect copy ~0.17 of contingency similarity.
MAX_BINS = 5
MIN_BINS = 3
ROWS_PER_BIN = 20
# Classifier two-sample tests on small tables are noisy; repeat the cross-validation with new folds below this size.
SMALL_TABLE_ROWS = 2_000
LARGE_SAMPLE_ROWS = 10_000
EARLY_STOPPING_ROWS = 2_000
# OpenMP threads for the gradient-boosting fits. One: on a shared 2-core machine, OpenMP's spinning threads slowed a
# 138-row detection test from 1.4 s (one thread) to 78 s (two threads) while other processes ran.
FIT_THREADS = 1
# HistGradientBoosting handles at most 255 categories natively; beyond that a column is passed as ordinal codes.
MAX_NATIVE_CATEGORIES = 250


@dataclass(frozen=True)
class Score:
    """A metric's value and its parts (per column, per pair, or sub-scores) for the report."""

    value: float | None
    parts: dict[str, float] = field(default_factory=dict)
    info: dict[str, float | int | str | list] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ column shapes
def ks_complement(real: np.ndarray, synthetic: np.ndarray) -> float:
    """1 - Kolmogorov-Smirnov statistic, with missing values (NaN) sorted before every number.

    Treating missing as a point at minus infinity makes the statistic count the difference in missing shares too:
    the empirical CDFs differ by |missing_real - missing_synthetic| just below the smallest value.
    """
    if real.size == 0 or synthetic.size == 0:
        return 0.0
    r = np.sort(np.where(np.isnan(real), -np.inf, real))
    s = np.sort(np.where(np.isnan(synthetic), -np.inf, synthetic))
    grid = np.concatenate([r, s])  # every jump point of either CDF
    cdf_r = np.searchsorted(r, grid, side="right") / r.size
    cdf_s = np.searchsorted(s, grid, side="right") / s.size
    return float(1.0 - np.abs(cdf_r - cdf_s).max())


def tv_complement(real: np.ndarray, synthetic: np.ndarray) -> float:
    """1 - total variation distance between two category frequency tables (missing is a category of its own)."""
    if real.size == 0 or synthetic.size == 0:
        return 0.0
    p = pd.Series(real).value_counts(normalize=True)
    q = pd.Series(synthetic).value_counts(normalize=True)
    p, q = p.align(q, fill_value=0.0)
    return float(1.0 - 0.5 * np.abs(p - q).sum())


def column_shapes(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema) -> Score:
    """Mean over modelled columns of the KS complement (numeric, datetime) or TV complement (categorical)."""
    parts: dict[str, float] = {}
    for col in schema.modelled:
        if col.kind in NUMERIC_KINDS:
            parts[col.name] = ks_complement(
                numeric_values(real[col.name], col), numeric_values(synthetic[col.name], col)
            )
        else:
            parts[col.name] = tv_complement(category_labels(real[col.name]), category_labels(synthetic[col.name]))
    return Score(_mean(parts), parts)


# -------------------------------------------------------------------------------------------------- pair trends
def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks of the finite values; NaN stays NaN (Spearman correlation is Pearson on ranks)."""
    return pd.Series(values).rank(method="average").to_numpy()


def _codes(labels_real: np.ndarray, labels_syn: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer codes over the union of both label sets."""
    levels = np.unique(np.concatenate([labels_real, labels_syn]).astype(str))
    return (
        np.searchsorted(levels, labels_real.astype(str)),
        np.searchsorted(levels, labels_syn.astype(str)),
        levels.size,
    )


def _bins(real: np.ndarray, synthetic: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Bin both columns by the real column's quantiles; missing values get the last bin."""
    finite = real[np.isfinite(real)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1])) if finite.size else np.array([])

    def digitize(values: np.ndarray) -> np.ndarray:
        codes = np.digitize(values, edges)
        codes[~np.isfinite(values)] = edges.size + 1
        return codes

    return digitize(real), digitize(synthetic), edges.size + 2


def contingency_similarity(
    a_real: np.ndarray, b_real: np.ndarray, a_syn: np.ndarray, b_syn: np.ndarray, n_a: int, n_b: int
) -> float:
    """1 - total variation distance between the two joint frequency tables of a pair of coded columns."""
    joint_r = np.bincount(a_real * n_b + b_real, minlength=n_a * n_b) / a_real.size
    joint_s = np.bincount(a_syn * n_b + b_syn, minlength=n_a * n_b) / a_syn.size
    return float(1.0 - 0.5 * np.abs(joint_r - joint_s).sum())


def pair_trends(
    real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema, *, n_bins: int | None = None
) -> Score:
    """Mean similarity over all pairs of modelled columns.

    Numeric pairs: correlation similarity 1 - |rho_real - rho_syn| / 2 on Spearman correlations (rank based, so
    skewed columns count as fairly as symmetric ones), over rows where both are present. Categorical pairs: contingency
    similarity. Numeric-categorical pairs: contingency similarity after binning the numeric column into the real
    column's quantiles, so every pair of kinds is judged on its joint, not only on a linear trend.

    Args:
        n_bins: quantile bins per numeric column; by default between MIN_BINS and MAX_BINS, ROWS_PER_BIN real rows each.
    """
    if n_bins is None:
        n_bins = int(np.clip(len(real) // ROWS_PER_BIN, MIN_BINS, MAX_BINS))
    numeric = [c for c in schema.modelled if c.kind in NUMERIC_KINDS]
    categorical = [c for c in schema.modelled if c.kind not in NUMERIC_KINDS]
    parts: dict[str, float] = {}

    if len(numeric) >= 2:
        rank_r = pd.DataFrame({c.name: _ranks(numeric_values(real[c.name], c)) for c in numeric})
        rank_s = pd.DataFrame({c.name: _ranks(numeric_values(synthetic[c.name], c)) for c in numeric})
        corr_r, corr_s = rank_r.corr(), rank_s.corr()  # pairwise-complete Pearson on ranks = Spearman
        for a, b in combinations([c.name for c in numeric], 2):
            rho_r, rho_s = corr_r.loc[a, b], corr_s.loc[a, b]
            if np.isfinite(rho_r):
                parts[f"{a} | {b}"] = float(1 - abs(rho_r - (rho_s if np.isfinite(rho_s) else 0.0)) / 2)

    coded: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    for c in categorical:
        coded[c.name] = _codes(category_labels(real[c.name]), category_labels(synthetic[c.name]))
    binned: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    if categorical:
        for c in numeric:
            binned[c.name] = _bins(numeric_values(real[c.name], c), numeric_values(synthetic[c.name], c), n_bins)
    discrete = {**coded, **binned}
    names = [c.name for c in schema.modelled]
    for a, b in combinations(names, 2):
        if a in binned and b in binned:
            continue  # numeric pairs are judged by correlation above
        if a not in discrete or b not in discrete:
            continue
        ar, as_, na = discrete[a]
        br, bs, nb = discrete[b]
        parts[f"{a} | {b}"] = contingency_similarity(ar, br, as_, bs, na, nb)
    return Score(_mean(parts), parts)


# ------------------------------------------------------------------------------------------------- classifiers
def model_features(frames: list[pd.DataFrame], columns: list[ColumnSchema]) -> tuple[list[np.ndarray], np.ndarray]:
    """Encode frames for HistGradientBoosting: numbers as floats, categories as shared codes, missing as NaN.

    Returns:
        One (n_rows, n_columns) float array per frame, and the boolean mask of native categorical features.
    """
    blocks: list[list[np.ndarray]] = [[] for _ in frames]
    mask: list[bool] = []
    for col in columns:
        if col.kind in NUMERIC_KINDS:
            for block, frame in zip(blocks, frames, strict=True):
                block.append(numeric_values(frame[col.name], col))
            mask.append(False)
            continue
        labels = [category_labels(f[col.name]) for f in frames]
        levels = np.unique(np.concatenate(labels).astype(str))
        for block, lab in zip(blocks, labels, strict=True):
            block.append(np.searchsorted(levels, lab.astype(str)).astype(np.float64))
        mask.append(levels.size <= MAX_NATIVE_CATEGORIES)
    arrays = [np.stack(b, axis=1) if b else np.zeros((len(f), 0)) for b, f in zip(blocks, frames, strict=True)]
    return arrays, np.array(mask, dtype=bool)


def detection_auc(
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    seed: int = 0,
    n_folds: int = 5,
    max_rows: int = 10_000,
) -> Score:
    """Classifier two-sample test: cross-validated AUC of telling holdout rows from synthetic rows.

    Every holdout row and every synthetic row takes part (at most `max_rows` of each, to bound the cost). AUC does not
    depend on class balance, and the synthetic side is usually the larger one (the holdout is a fifth of the data):
    using all of it let the classifier tell an independent-marginals sample of wine from the 36-row holdout with AUC
    0.78-0.85 instead of 0.59-0.65 on balanced classes, while a fitted GMM stayed at 0.53-0.75. A gradient-boosting
    classifier scores every row out of fold; the value is max(AUC, 1 - AUC): 0.5 means indistinguishable, 1.0 means
    every row is told apart. Small tables repeat the cross-validation with fresh folds and average, because one split
    of 100 rows is mostly noise.

    The score's `parts` hold each column's AUC alone (and the pairs that tell more than their columns), and
    `info["give_aways"]` the report's "what gives the synthetic rows away" list (see `tasks.giveaways`).
    """
    rng = np.random.default_rng(seed)
    n = min(len(holdout), len(synthetic), max_rows)
    n_syn = min(len(synthetic), max_rows)
    real = holdout.iloc[rng.choice(len(holdout), n, replace=False)]
    syn = synthetic.iloc[rng.choice(len(synthetic), n_syn, replace=False)]
    (x_real, x_syn), mask = model_features([real, syn], schema.modelled)
    x = np.concatenate([x_real, x_syn])
    y = np.r_[np.zeros(n), np.ones(n_syn)]
    # Large samples need fewer folds for a precise AUC; three keep the 100k-row bench's detection test near 6 s.
    folds = min(n_folds if n + n_syn < LARGE_SAMPLE_ROWS else 3, n)
    if folds < 2:
        return Score(None, info={"real_rows": n})
    repeats = 3 if n + n_syn < SMALL_TABLE_ROWS else 1
    with threadpool_limits(FIT_THREADS, user_api="openmp"):
        aucs = [_oof_auc(x, y, mask, folds, seed, seed + r) for r in range(repeats)]
    auc = float(np.mean(aucs))
    info: dict = {"real_rows": n, "synthetic_rows": n_syn, "folds": folds, "repeats": repeats, "raw_auc": auc}
    # Which columns and pairs the rows are told apart by: per-column AUCs in `parts`, the report's list in `info`.
    parts, info["give_aways"] = find_giveaways(real, syn, schema.modelled, seed=seed)
    return Score(max(auc, 1.0 - auc), parts, info)


def _oof_auc(x: np.ndarray, y: np.ndarray, mask: np.ndarray, folds: int, seed: int, split_seed: int) -> float:
    """AUC of out-of-fold classifier scores over one shuffled stratified K-fold split."""
    scores = np.zeros(y.size)
    cv = StratifiedKFold(folds, shuffle=True, random_state=split_seed)
    for fit_idx, test_idx in cv.split(x, y):
        clf = HistGradientBoostingClassifier(categorical_features=mask, random_state=seed, max_iter=100)
        clf.fit(x[fit_idx], y[fit_idx])
        scores[test_idx] = clf.predict_proba(x[test_idx])[:, 1]
    return float(roc_auc_score(y, scores))


def ml_utility(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    target: str,
    *,
    seed: int = 0,
    max_rows: int = 20_000,
) -> Score:
    """Train-synthetic-test-real over train-real-test-real: how much predictive power survives synthesis.

    The same gradient-boosting model is trained once on synthetic rows and once on real training rows, and both are
    scored on the holdout: macro-F1 for a categorical target (so rare classes count), R^2 for a numeric one. The
    value is TSTR / TRTR; it is None when the real model itself has no skill (TRTR <= 0.05), because then the ratio
    says nothing.
    """
    col = schema.column(target)
    features = [c for c in schema.modelled if c.name != target]
    rng = np.random.default_rng(seed)
    fit_real = train.iloc[rng.permutation(len(train))[:max_rows]]
    fit_syn = synthetic.iloc[rng.permutation(len(synthetic))[:max_rows]]
    (x_real, x_syn, x_test), mask = model_features([fit_real, fit_syn, holdout], features)
    classify = col.kind not in NUMERIC_KINDS
    if classify:
        y_real, y_syn, y_test = (category_labels(f[target]).astype(str) for f in (fit_real, fit_syn, holdout))
    else:
        y_real, y_syn, y_test = (numeric_values(f[target], col) for f in (fit_real, fit_syn, holdout))
        keep = np.isfinite(y_test)
        x_test, y_test = x_test[keep], y_test[keep]

    # Early stopping on a 10% validation split once there are enough rows: it halves the 100k-row bench's cost, and
    # both models get the same rule, so the ratio stays fair.
    stopping = {"early_stopping": len(fit_real) >= EARLY_STOPPING_ROWS}

    def score(x: np.ndarray, y: np.ndarray) -> float:
        # A feature with no value in these training rows says nothing, and the booster cannot bin it: left out.
        keep = ~np.isnan(x).all(axis=0) if x.size else np.zeros(x.shape[1], dtype=bool)
        x, test = x[:, keep], x_test[:, keep]
        kept_mask = mask[keep] if isinstance(mask, np.ndarray) else mask
        if classify:
            if np.unique(y).size < 2 or not keep.any():  # one class, or nothing to split on: one prediction
                common = pd.Series(y).mode()
                predicted = np.full(y_test.shape, common.iloc[0] if len(common) else "", dtype=object)
            else:
                clf = HistGradientBoostingClassifier(categorical_features=kept_mask, random_state=seed, **stopping)
                predicted = clf.fit(x, y).predict(test)
            return float(f1_score(y_test, predicted, average="macro"))
        ok = np.isfinite(y)
        if not keep.any() or not ok.any():
            return float(r2_score(y_test, np.full(y_test.shape, np.mean(y[ok]) if ok.any() else 0.0)))
        reg = HistGradientBoostingRegressor(categorical_features=kept_mask, random_state=seed, **stopping)
        return float(r2_score(y_test, reg.fit(x[ok], y[ok]).predict(test)))

    with threadpool_limits(FIT_THREADS, user_api="openmp"):
        trtr, tstr = score(x_real, y_real), score(x_syn, y_syn)
    measure = "macro-F1" if classify else "R^2"
    info = {"target": target, "measure": measure, "trtr": trtr, "tstr": tstr}
    if trtr <= 0.05:
        logger.info(
            "ml_utility: the real model has no skill on %r (%s %.3f); ratio not reported", target, measure, trtr
        )
        return Score(None, info=info)
    return Score(max(tstr, 0.0) / trtr, info=info)


# ----------------------------------------------------------------------------------------------------- coverage
def coverage(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema) -> Score:
    """Mean over columns of how much of the real support the synthetic data reaches.

    Categorical: share of the real categories (missing included) that appear in the synthetic column. Numeric and
    datetime: share of the real [min, max] range covered by the synthetic [min, max] range. A model that collapses
    onto the common modes keeps good shapes but loses coverage.
    """
    parts: dict[str, float] = {}
    for col in schema.modelled:
        if col.kind in NUMERIC_KINDS:
            r = numeric_values(real[col.name], col)
            s = numeric_values(synthetic[col.name], col)
            r, s = r[np.isfinite(r)], s[np.isfinite(s)]
            if r.size == 0:
                continue
            if s.size == 0:
                parts[col.name] = 0.0
                continue
            lo, hi = r.min(), r.max()
            if hi == lo:
                parts[col.name] = float(((s >= lo) & (s <= hi)).any())
                continue
            overlap = max(0.0, min(hi, s.max()) - max(lo, s.min()))
            parts[col.name] = float(overlap / (hi - lo))
        else:
            real_levels = set(category_labels(real[col.name]).tolist())
            syn_levels = set(category_labels(synthetic[col.name]).tolist())
            parts[col.name] = len(real_levels & syn_levels) / max(len(real_levels), 1)
    return Score(_mean(parts), parts)


def _mean(parts: dict[str, float]) -> float | None:
    return float(np.mean(list(parts.values()))) if parts else None
