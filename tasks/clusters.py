"""Latent clusters of a parent table's rows: the link that carries a parent's character to its children.

A child table learns which kind of parent each row hangs from (the parent's cluster, a categorical column), and the
parent table's model learns how many children each kind of parent has. K-means on the parent's modelled columns and
children counts, standardised, groups parents that look alike and have alike families (ClavaDDPM's idea, with a
plain clustering instead of a learned one). Synthetic parents are put in clusters by the same fitted featurizer and
centroids, so they need no label of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

MAX_CLUSTERS = 12
ROWS_PER_CLUSTER = 20  # parents per cluster: few enough that a cluster's parents are alike, enough to learn from
TOP_LEVELS = 10  # one-hot columns per categorical column; the rest share none


def n_clusters(n_rows: int) -> int:
    """Clusters for `n_rows` parents: one per ROWS_PER_CLUSTER rows, between 1 and MAX_CLUSTERS."""
    return int(np.clip(n_rows // ROWS_PER_CLUSTER, 1, MAX_CLUSTERS))


def _spread(values: np.ndarray) -> np.ndarray:
    """Non-negative heavy-tailed values (children counts) on a log scale, so a few huge families do not own k-means."""
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() >= 0 and finite.max() > 10 * max(np.median(finite), 1):
        return np.log1p(values)
    return values


def cluster_label(index: int) -> str:
    return f"c{index}"


@dataclass
class _Column:
    name: str
    kind: str  # "number" or "category"
    log: bool = False
    center: float = 0.0
    scale: float = 1.0
    levels: list[str] = field(default_factory=list)
    has_missing: bool = False


@dataclass
class ParentClusters:
    """A featurizer and k-means centroids fitted on a parent's real rows; `predict` labels synthetic ones."""

    seed: int = 0
    columns_: list[_Column] = field(default_factory=list)
    kmeans_: KMeans | None = None

    def _numbers(self, series: pd.Series) -> np.ndarray:
        if pd.api.types.is_datetime64_any_dtype(series):
            return series.astype("int64").where(series.notna()).to_numpy(dtype=float) / 1e9
        return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)

    def fit(self, frame: pd.DataFrame) -> np.ndarray:
        """Fit on the real rows and return their labels (`c0`, `c1`, ...)."""
        self.columns_ = []
        for name in frame.columns:
            series = frame[name]
            numeric = pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series)
            if numeric and not pd.api.types.is_bool_dtype(series):
                raw = self._numbers(series)
                values = _spread(raw)
                finite = values[np.isfinite(values)]
                center = float(np.median(finite)) if finite.size else 0.0
                scale = float(finite.std()) if finite.size > 1 and finite.std() > 0 else 1.0
                log = values is not raw
                self.columns_.append(_Column(name, "number", log, center, scale, has_missing=bool(np.isnan(raw).any())))
            else:
                shares = series.astype(str).value_counts(normalize=True)[:TOP_LEVELS]
                # one-hot columns scaled so the whole category weighs as much as one standardised number
                spread = float(np.sqrt((shares * (1 - shares)).sum())) or 1.0
                self.columns_.append(_Column(name, "category", scale=spread, levels=shares.index.tolist()))
        x = self._features(frame)
        k = min(n_clusters(len(frame)), len(np.unique(x, axis=0)))
        self.kmeans_ = KMeans(n_clusters=max(k, 1), n_init=3, random_state=self.seed)
        with threadpool_limits(1):  # a shared machine: k-means threads spin against the models' threads
            labels = self.kmeans_.fit_predict(x)
        return np.array([cluster_label(i) for i in labels], dtype=object)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Labels for rows with the fitted columns (synthetic parents)."""
        with threadpool_limits(1):
            labels = self.kmeans_.predict(self._features(frame))
        return np.array([cluster_label(i) for i in labels], dtype=object)

    def distances(self, frame: pd.DataFrame) -> np.ndarray:
        """(n_rows, n_clusters) distances of rows to every centroid: who can stand in for a cluster."""
        return self.kmeans_.transform(self._features(frame))

    @property
    def labels(self) -> list[str]:
        return [cluster_label(i) for i in range(self.kmeans_.n_clusters)]

    def _features(self, frame: pd.DataFrame) -> np.ndarray:
        blocks: list[np.ndarray] = []
        for col in self.columns_:
            series = frame[col.name]
            if col.kind == "number":
                values = self._numbers(series)
                values = np.log1p(np.clip(values, 0, None)) if col.log else values
                missing = ~np.isfinite(values)
                blocks.append(np.where(missing, 0.0, (values - col.center) / col.scale)[:, None])
                if col.has_missing:
                    blocks.append(missing.astype(float)[:, None])
            else:
                text = series.astype(str).to_numpy()
                blocks.append(np.stack([text == level for level in col.levels], axis=1) / col.scale)
        if not blocks:
            return np.zeros((len(frame), 1))
        return np.concatenate(blocks, axis=1)  # (n_rows, n_features)
