"""What gives synthetic rows away: the columns and column pairs a classifier can tell real from synthetic by.

The detection gate's gradient-boosting classifier answers "can the rows be told apart", not "by what". Importances of
that classifier are unstable and hard to read; a classifier given one column alone is clear ("wage alone tells them
apart with AUC 0.77") and, built as a cross-fitted histogram likelihood ratio, costs a few `bincount`s per column.

Each column is cut into cells: every exact value that holds at least `SPIKE_SHARE` of the pooled rows is a cell of its
own (heaped and rounded values, zero inflation, a bound the model piles mass on), the remaining numbers fall in
pooled quantile bins, missing is a cell, and a category is its own cell. A row's score is the synthetic-to-real ratio
of its cell, estimated on the other folds; the AUC of those scores is the column's AUC. A pair crosses the two columns'
cells (coarser bins) and is reported when it tells more than either column does alone: a broken relation.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from synthgate.schemas.table import ColumnSchema
from synthgate.tasks.distance import NUMERIC_KINDS, category_labels, numeric_values

SPIKE_SHARE = 0.01  # an exact value held by 1% of the pooled rows is a cell of its own (heaping, zero inflation)
MIN_SPIKE_ROWS = 5
COLUMN_BINS = 20
PAIR_BINS = 6
FOLDS = 5
SMOOTHING = 0.5  # pseudo-count per cell and class: an unseen cell scores as even, not as certain
MAX_PAIRS = 600  # wide tables: pairs among the columns that give most away first, to bound the cost
REPORT_COLUMNS = 8
REPORT_PAIRS = 5
MIN_REPORTED_AUC = 0.55  # a column alone below this is noise on a few hundred rows
MIN_PAIR_LIFT = 0.03  # a pair is reported when it beats its better column by this much AUC


def _cells(values: list[np.ndarray], col: ColumnSchema, n_bins: int) -> tuple[np.ndarray, list[str]]:
    """Cell index of every pooled row of one column, and a short label per cell (for the report)."""
    if col.kind not in NUMERIC_KINDS:
        labels = np.concatenate(values).astype(str)
        levels, codes = np.unique(labels, return_inverse=True)
        return codes, [repr(str(lv)) for lv in levels]
    x = np.concatenate(values)
    missing = ~np.isfinite(x)
    finite = x[~missing]
    uniq, counts = np.unique(finite, return_counts=True)
    spikes = uniq[counts >= max(MIN_SPIKE_ROWS, SPIKE_SHARE * x.size)]
    is_spike = np.isin(x, spikes) & ~missing
    rest = x[~missing & ~is_spike]
    edges = np.unique(np.quantile(rest, np.linspace(0, 1, n_bins + 1)[1:-1])) if rest.size else np.array([])
    codes = np.empty(x.size, dtype=np.int64)
    codes[~missing & ~is_spike] = np.searchsorted(edges, rest, side="right")
    codes[is_spike] = edges.size + 1 + np.searchsorted(spikes, x[is_spike])
    codes[missing] = edges.size + 1 + spikes.size
    bounds = np.r_[rest.min() if rest.size else np.nan, edges, rest.max() if rest.size else np.nan]
    labels = [f"{bounds[i]:.4g} to {bounds[i + 1]:.4g}" for i in range(edges.size + 1)]
    labels += [f"exactly {v:.6g}" for v in spikes] + ["missing"]
    return codes, labels


def _oof_auc(codes: np.ndarray, y: np.ndarray, folds: np.ndarray, n_folds: int) -> float:
    """AUC of the cross-fitted synthetic/real ratio of each row's cell (1 = synthetic)."""
    codes = np.unique(codes, return_inverse=True)[1]
    n_cells = int(codes.max()) + 1
    key = folds * n_cells + codes
    syn = np.bincount(key[y == 1], minlength=n_folds * n_cells).reshape(n_folds, n_cells)
    real = np.bincount(key[y == 0], minlength=n_folds * n_cells).reshape(n_folds, n_cells)
    syn_out, real_out = syn.sum(0) - syn, real.sum(0) - real  # counts outside each fold
    n_syn = syn_out.sum(1, keepdims=True)
    n_real = real_out.sum(1, keepdims=True)
    ratio = ((syn_out + SMOOTHING) / (n_syn + SMOOTHING)) / ((real_out + SMOOTHING) / (n_real + SMOOTHING))
    return max(_auc(y, ratio[folds, codes]), 0.5)  # below 0.5 is cross-fitting noise, not a give-away


def _auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC with ties averaged; sklearn's `roc_auc_score` costs 5x more in input checks per call here."""
    ranks = rankdata(scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _why(codes: np.ndarray, y: np.ndarray, labels: list[str]) -> str:
    """The cell whose share differs most between real and synthetic rows, as 'cell: real a%, synthetic b%'."""
    n_cells = len(labels)
    real = np.bincount(codes[y == 0], minlength=n_cells) / max((y == 0).sum(), 1)
    syn = np.bincount(codes[y == 1], minlength=n_cells) / max((y == 1).sum(), 1)
    worst = int(np.argmax(np.abs(real - syn)))
    return f"{labels[worst]}: real {real[worst]:.1%}, synthetic {syn[worst]:.1%}"


def find_giveaways(
    real: pd.DataFrame, synthetic: pd.DataFrame, columns: list[ColumnSchema], *, seed: int = 0
) -> tuple[dict[str, float], list[dict[str, object]]]:
    """Per-column and per-pair AUCs of telling `real` from `synthetic` rows by those columns alone.

    Returns:
        `(aucs, findings)`: the AUC of every column (and of every reported pair, keyed "a | b"), and the report's
        list of give-aways, strongest first: `{"columns", "auc", "why"}` for columns at or above
        `MIN_REPORTED_AUC`, then pairs whose AUC beats their better column by `MIN_PAIR_LIFT`.
    """
    y = np.r_[np.zeros(len(real), dtype=np.int64), np.ones(len(synthetic), dtype=np.int64)]
    if y.size < 2 * FOLDS or not columns:
        return {}, []
    folds = np.random.default_rng(seed).permutation(y.size) % FOLDS
    fine: dict[str, tuple[np.ndarray, list[str]]] = {}
    coarse: dict[str, np.ndarray] = {}
    for col in columns:
        if col.kind in NUMERIC_KINDS:
            parts = [numeric_values(real[col.name], col), numeric_values(synthetic[col.name], col)]
        else:
            parts = [category_labels(real[col.name]), category_labels(synthetic[col.name])]
        fine[col.name] = _cells(parts, col, COLUMN_BINS)
        coarse[col.name] = _cells(parts, col, PAIR_BINS)[0] if col.kind in NUMERIC_KINDS else fine[col.name][0]
    aucs = {name: _oof_auc(codes, y, folds, FOLDS) for name, (codes, _) in fine.items()}
    findings: list[dict[str, object]] = [
        {"columns": name, "auc": round(auc, 4), "why": _why(fine[name][0], y, fine[name][1])}
        for name, auc in sorted(aucs.items(), key=lambda kv: -kv[1])
        if auc >= MIN_REPORTED_AUC
    ][:REPORT_COLUMNS]

    ranked = sorted(aucs, key=lambda name: -aucs[name])
    pairs = list(combinations(ranked, 2))[:MAX_PAIRS]
    lifts: list[tuple[float, str, float]] = []
    for a, b in pairs:
        joint = coarse[a].astype(np.int64) * (int(coarse[b].max()) + 1) + coarse[b]
        auc = _oof_auc(joint, y, folds, FOLDS)
        lift = auc - max(aucs[a], aucs[b])
        if lift >= MIN_PAIR_LIFT:
            lifts.append((lift, f"{a} | {b}", auc))
    for lift, key, auc in sorted(lifts, reverse=True)[:REPORT_PAIRS]:
        aucs[key] = auc
        findings.append(
            {
                "columns": key,
                "auc": round(auc, 4),
                "why": f"the pair tells {lift:.2f} AUC more than either column alone",
            }
        )
    return {k: round(v, 4) for k, v in aucs.items()}, findings
