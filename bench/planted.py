"""Planted anomalies in real tables: rows made implausible in known ways, for anomaly-score tests and the bench.

Three kinds, each on its own rows, each a thing a data team meets:
- "x20": one numeric value multiplied by 20 (a unit error, a slipped decimal point);
- "swapped": the categorical value that the other columns predict best (largest correlation ratio with a numeric
  column) replaced by the level least like it (a mislabelled row: a label that carries no information cannot be
  told to be wrong, so the plant goes where it can);
- "combination": two values that are each common but never occur together (a categorical pair with zero count in
  the reference, else the two ends of the most correlated numeric pair against their correlation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KINDS = ("x20", "swapped", "combination")


def _numeric(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].nunique() > 10]


def _categorical(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in _numeric(frame) and 2 <= frame[c].nunique() <= 30]


def _structured_category(reference: pd.DataFrame, cats: list[str], numeric: list[str]) -> str | None:
    """The categorical column with the largest correlation ratio (eta squared) against any numeric column."""
    best, best_eta = None, -1.0
    z = (reference[numeric] - reference[numeric].mean()) / reference[numeric].std()
    for col in cats:
        eta = float((z.groupby(reference[col]).transform("mean") ** 2).mean().max()) if numeric else 0.0
        if eta > best_eta:
            best, best_eta = col, eta
    return best


def _farthest_level(reference: pd.DataFrame, col: str, numeric: list[str], level: object) -> object:
    """The level of `col` whose rows' standardised numeric means lie farthest from `level`'s."""
    z = (reference[numeric] - reference[numeric].mean()) / reference[numeric].std()
    means = z.groupby(reference[col]).mean()
    if level not in means.index or len(means) < 2:
        return next(v for v in means.index if v != level)
    dist = ((means - means.loc[level]) ** 2).sum(1)
    return dist.idxmax()


def _impossible_pair(reference: pd.DataFrame) -> tuple[str, object, str, object] | None:
    """A categorical pair (a, value, b, value) whose combination never occurs in `reference`, both values common."""
    cats = _categorical(reference)
    for i, a in enumerate(cats):
        for b in cats[i + 1 :]:
            counts = pd.crosstab(reference[a], reference[b])
            zero = np.argwhere(counts.to_numpy() == 0)
            if len(zero):
                r, c = zero[0]
                return a, counts.index[r], b, counts.columns[c]
    return None


def plant_anomalies(
    rows: pd.DataFrame, reference: pd.DataFrame, *, share: float = 0.5, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Copy `rows` and make `share` of them anomalous, the kinds in turn.

    Args:
        rows: rows the model never saw (planted ones and clean ones come from the same rows).
        reference: the rows the model learned from: what "common" and "never together" mean.
        share: fraction of `rows` to plant.
        seed: which rows, columns and levels.

    Returns:
        `(frame, is_planted, kind)`: the rows with anomalies, a bool mask, and each row's kind ("" when clean).
    """
    rng = np.random.default_rng(seed)
    out = rows.copy().reset_index(drop=True)
    n_plant = round(share * len(out))
    chosen = rng.permutation(len(out))[:n_plant]
    kind = np.full(len(out), "", dtype=object)
    numeric, cats = _numeric(reference), _categorical(reference)
    pair = _impossible_pair(reference)
    swap_col = _structured_category(reference, cats, numeric) if cats else None
    corr = reference[numeric].corr(method="spearman").abs().to_numpy().copy() if len(numeric) > 1 else None
    if corr is not None:
        np.fill_diagonal(corr, 0)
    for i, row in enumerate(chosen):
        what = KINDS[i % len(KINDS)]
        if what == "x20" and numeric:
            col = numeric[rng.integers(len(numeric))]
            value = out.at[row, col]
            if pd.isna(value) or abs(value) < 1e-9:
                value = reference[col].abs().max()
            out[col] = out[col].astype("float64")
            out.at[row, col] = float(value) * 20
        elif what == "swapped" and swap_col is not None:
            out.at[row, swap_col] = _farthest_level(reference, swap_col, numeric, out.at[row, swap_col])
        elif what == "combination" and pair is not None:
            a, va, b, vb = pair
            out.at[row, a], out.at[row, b] = va, vb
        elif what == "combination" and corr is not None:
            i_a, i_b = np.unravel_index(corr.argmax(), corr.shape)
            a, b = numeric[i_a], numeric[i_b]
            sign = np.sign(reference[[a, b]].corr(method="spearman").iloc[0, 1])
            out[a] = out[a].astype("float64")
            out[b] = out[b].astype("float64")
            out.at[row, a] = reference[a].quantile(0.02)
            out.at[row, b] = reference[b].quantile(0.98 if sign > 0 else 0.02)
        else:
            continue
        kind[row] = what
    return out, kind != "", kind
