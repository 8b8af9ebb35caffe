"""Mixed-type (Gower) distances between table rows, and chunked nearest-neighbour search with torch.

Privacy metrics ask "how close is each synthetic row to the closest real row?", on tables that mix numbers,
categories, datetimes and missing values. Gower's distance answers that with one number in [0, 1] per pair of rows:
the mean over columns of a per-column distance (Gower 1971, "A general coefficient of similarity"):

    numeric / integer / datetime: |a - b| / range of the real column (clipped to 1)
    categorical / boolean:        0 if equal else 1
    missing vs present: 1; both missing: 0

Every per-column distance is an L1 distance in a small embedding, so the whole Gower distance is one L1 distance
(`torch.cdist(p=1)`) on an encoded matrix, split in two for speed: numeric coordinates go through `cdist`, category
one-hots through a matrix product (mismatches = n_categorical - one_hot_a @ one_hot_b.T), which BLAS does quickly.

A numeric value v scaled to [0, 1] is embedded as (v/2, (1-v)/2) and a missing value as (-1/4, -1/4): then
|a - b| = L1 between two present values, 1 between missing and present, 0 between two missing, exactly. Columns with
no missing value in any compared frame keep one coordinate, v, which is cheaper (cdist's cost grows with width).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from synthgate.schemas.constraints import epoch_seconds
from synthgate.schemas.table import ColumnKind, ColumnSchema, TableSchema

logger = logging.getLogger(__name__)

NUMERIC_KINDS = (ColumnKind.CONTINUOUS, ColumnKind.INTEGER, ColumnKind.DATETIME)
# Elements of one (query chunk x reference) distance block: 2.5e7 float32 = 100 MB, small enough for a shared machine.
BLOCK_ELEMENTS = 25_000_000
_MISSING = "__missing__"


def numeric_values(series: pd.Series, col: ColumnSchema) -> np.ndarray:
    """Numbers as float64 (datetimes as seconds since the epoch); missing values are NaN."""
    if col.kind == ColumnKind.DATETIME:
        return epoch_seconds(pd.to_datetime(series, errors="coerce"))
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def category_labels(series: pd.Series) -> np.ndarray:
    """Values as strings (so 1, 1.0 and "1" from different dtypes compare equal), missing as one shared label."""
    missing = series.isna().to_numpy()
    labels = series.astype(object).astype(str).to_numpy(dtype=object)
    labels[missing] = _MISSING
    return labels


@dataclass
class GowerEncoder:
    """Embeds rows so that the L1 distance between embeddings is the Gower distance times the number of columns.

    Fitted on the real data (train and holdout) so that every frame compared is scaled by the same real ranges.

    Attributes:
        columns: the modelled columns, in schema order.
        lows, spans: per numeric column, the real minimum and range (1.0 for a constant column).
        levels: per categorical column, the sorted real labels (unseen synthetic labels match nothing).
        with_missing: numeric columns embedded with two coordinates because some compared frame has missing values.
    """

    columns: list[ColumnSchema]
    lows: dict[str, float]
    spans: dict[str, float]
    levels: dict[str, list[str]]
    with_missing: set[str]

    @classmethod
    def fit(cls, schema: TableSchema, *frames: pd.DataFrame, others: Sequence[pd.DataFrame] = ()) -> GowerEncoder:
        """Learn numeric ranges and category levels from the real `frames`.

        Args:
            schema: decides each column's kind.
            frames: the real frames; their ranges scale the numeric distances.
            others: further frames that will be embedded (the synthetic one): only their missing values are looked at,
                so the layout can represent them.
        """
        columns = list(schema.modelled)
        lows: dict[str, float] = {}
        spans: dict[str, float] = {}
        levels: dict[str, list[str]] = {}
        with_missing: set[str] = set()
        for col in columns:
            if col.kind in NUMERIC_KINDS:
                values = np.concatenate([numeric_values(f[col.name], col) for f in frames])
                finite = values[np.isfinite(values)]
                lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
                lows[col.name], spans[col.name] = lo, (hi - lo) if hi > lo else 1.0
                if finite.size < values.size or any(f[col.name].isna().any() for f in others):
                    with_missing.add(col.name)
            else:
                labels = np.concatenate([category_labels(f[col.name]) for f in frames])
                levels[col.name] = sorted(set(labels.tolist()))
        return cls(columns=columns, lows=lows, spans=spans, levels=levels, with_missing=with_missing)

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    def transform(self, frame: pd.DataFrame) -> tuple[Tensor, Tensor]:
        """Embed a frame: (numeric coordinates, category one-hots), both float32.

        Returns:
            numeric: (n_rows, n_numeric + n_with_missing): v, or (v/2, (1-v)/2) and (-1/4, -1/4) when missing.
            one_hot: (n_rows, total number of levels), at most one 1 per categorical column per row.

        Raises:
            ValueError: a column fitted without missing values has some here (fit with this frame in `others`).
        """
        n = len(frame)
        numeric_parts: list[np.ndarray] = []
        onehot_parts: list[np.ndarray] = []
        for col in self.columns:
            if col.kind in NUMERIC_KINDS:
                raw = numeric_values(frame[col.name], col)
                scaled = np.clip((raw - self.lows[col.name]) / self.spans[col.name], 0.0, 1.0)
                if col.name not in self.with_missing:
                    if np.isnan(raw).any():
                        raise ValueError(f"column {col.name!r} has missing values the encoder was not fitted for")
                    numeric_parts.append(scaled[:, None])  # (n, 1)
                    continue
                pair = np.stack([scaled / 2, (1 - scaled) / 2], axis=1)  # (n, 2)
                pair[np.isnan(raw)] = -0.25
                numeric_parts.append(pair)
            else:
                levels = self.levels[col.name]
                codes = pd.Categorical(category_labels(frame[col.name]), categories=levels).codes  # -1 when unseen
                block = np.zeros((n, len(levels)), dtype=np.float32)
                seen = codes >= 0
                block[np.flatnonzero(seen), codes[seen]] = 1.0
                onehot_parts.append(block)
        numeric = np.concatenate(numeric_parts, axis=1) if numeric_parts else np.zeros((n, 0))
        one_hot = np.concatenate(onehot_parts, axis=1) if onehot_parts else np.zeros((n, 0))
        return torch.from_numpy(numeric.astype(np.float32)), torch.from_numpy(one_hot.astype(np.float32))


@dataclass
class Embedded:
    """A frame embedded by a `GowerEncoder`; `n_categorical` is the number of categorical columns."""

    numeric: Tensor  # (n_rows, 2 * n_numeric)
    one_hot: Tensor  # (n_rows, n_levels)
    n_categorical: int
    n_columns: int

    def __len__(self) -> int:
        return self.numeric.shape[0]

    def take(self, index: np.ndarray) -> Embedded:
        idx = torch.as_tensor(index, dtype=torch.long)
        return Embedded(self.numeric[idx], self.one_hot[idx], self.n_categorical, self.n_columns)


def embed(encoder: GowerEncoder, frame: pd.DataFrame) -> Embedded:
    """Embed `frame` with `encoder` (see `GowerEncoder.transform`)."""
    numeric, one_hot = encoder.transform(frame)
    n_cat = sum(1 for c in encoder.columns if c.kind not in NUMERIC_KINDS)
    return Embedded(numeric, one_hot, n_cat, encoder.n_columns)


def _summed(query: Embedded, reference: Embedded) -> Tensor:
    """Sum of per-column distances minus n_categorical: (n_query, n_reference), built in place to spare memory passes."""
    if query.numeric.shape[1]:
        total = torch.cdist(query.numeric, reference.numeric, p=1)  # (q, r): numeric column distances
    else:
        total = torch.zeros(len(query), len(reference))
    if query.n_categorical:
        total.addmm_(query.one_hot, reference.one_hot.T, alpha=-1.0)  # (q, r): minus category matches
    return total


def pairwise(query: Embedded, reference: Embedded) -> Tensor:
    """Gower distances between every query row and every reference row: (n_query, n_reference) in [0, 1]."""
    return (_summed(query, reference) + query.n_categorical).clamp_(min=0.0) / max(query.n_columns, 1)


@torch.no_grad()
def nearest(
    query: Embedded, reference: Embedded, *, block_elements: int = BLOCK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest and second-nearest Gower distance from each query row to the reference rows.

    Queries are processed in chunks so that one (chunk, n_reference) block stays near `block_elements` floats.

    Returns:
        (d1, d2): float64 arrays of shape (n_query,); d2 is NaN when the reference has a single row.
    """
    n_ref = len(reference)
    if n_ref == 0:
        raise ValueError("nearest-neighbour search needs at least one reference row")
    chunk = max(1, block_elements // n_ref)
    k = min(2, n_ref)
    d1 = np.empty(len(query))
    d2 = np.full(len(query), np.nan)
    for start in range(0, len(query), chunk):
        part = query.take(np.arange(start, min(start + chunk, len(query))))
        top = _summed(part, reference).topk(k, dim=1, largest=False).values  # (chunk, k), ascending
        top = (top + query.n_categorical).clamp_(min=0.0) / max(query.n_columns, 1)  # Gower scale, on k values only
        d1[start : start + len(part)] = top[:, 0].double().numpy()
        if k == 2:
            d2[start : start + len(part)] = top[:, 1].double().numpy()
    return d1, d2
