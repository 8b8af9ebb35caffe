"""Privacy metrics: does the synthetic table copy, or sit suspiciously close to, the training rows?

Every metric compares the synthetic data's closeness to the training rows with the closeness of the holdout rows
(real rows the model never saw) to the same training rows: that is the honest reference point, because real tables
hold natural near-duplicates and, with few discrete columns, exact duplicates (a holdout row can equal a training row
10% of the time). Distances are Gower distances on mixed types with missing values (`tasks.distance`).

Measured facts these definitions honour (see DESIGN.md, Privacy): the DCR share is computed against the FULL training
set, because with the reference cut to the holdout's size a sampler that returns training rows scores only ~0.62 (most
copies come from rows outside the cut); and it is read against its no-copy baseline n_train / (n_train + n_holdout).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from synthgate.schemas.table import TableSchema
from synthgate.tasks.distance import NUMERIC_KINDS, GowerEncoder, category_labels, embed, nearest, numeric_values
from synthgate.tasks.fidelity import Score

logger = logging.getLogger(__name__)

# Bins of the DCR histogram kept in the metric details, so the report can be redrawn from Parquet metadata alone.
HISTOGRAM_BINS = 30


# ------------------------------------------------------------------------------------------------ exact matches
def row_keys(frame: pd.DataFrame, schema: TableSchema) -> np.ndarray:
    """A 64-bit hash per row over the modelled columns, with values normalised so that equal rows hash equally.

    Numbers become float64 (integers and floats of the same value agree), categories their string labels, missing
    values one shared marker; this is what "the same row" means whatever dtype each frame came back with.
    """
    normal = {}
    for col in schema.modelled:
        if col.kind in NUMERIC_KINDS:
            normal[col.name] = np.round(numeric_values(frame[col.name], col), 9)
        else:
            normal[col.name] = category_labels(frame[col.name]).astype(str)
    return pd.util.hash_pandas_object(pd.DataFrame(normal), index=False).to_numpy()


def exact_match_ratio(
    train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema
) -> Score:
    """Share of synthetic rows equal to some training row, over the holdout's own share.

    A ratio near 1 (or below) means the synthetic data repeats training rows no more often than fresh real data does;
    a copying sampler scores 1 / holdout_rate. The holdout rate is smoothed ((k + 1) / (n + 1)) so the ratio stays
    finite on continuous tables where no holdout row equals a training row.
    """
    train_keys = row_keys(train, schema)
    syn_hits = np.isin(row_keys(synthetic, schema), train_keys)
    hold_hits = np.isin(row_keys(holdout, schema), train_keys)
    syn_rate = float(syn_hits.mean()) if syn_hits.size else 0.0
    hold_rate = (hold_hits.sum() + 1) / (hold_hits.size + 1)
    info = {"synthetic_rate": syn_rate, "holdout_rate": float(hold_hits.mean()) if hold_hits.size else 0.0}
    return Score(syn_rate / hold_rate, info=info)


# ---------------------------------------------------------------------------------------------------- distances
@dataclass
class PrivacyDistances:
    """Nearest-record Gower distances the distance-based privacy metrics share (computed once, used by all).

    Attributes:
        syn_train, syn_train_2nd: sampled synthetic rows -> full training set, nearest and second nearest.
        syn_holdout: the same synthetic rows -> full holdout set, nearest.
        hold_train, hold_train_2nd: sampled holdout rows -> full training set, nearest and second nearest.
        member_syn: sampled training rows (members) -> full synthetic set, nearest.
        nonmember_syn: sampled holdout rows (non-members) -> full synthetic set, nearest.
        n_train, n_holdout: sizes of the full reference sets.
    """

    syn_train: np.ndarray
    syn_train_2nd: np.ndarray
    syn_holdout: np.ndarray
    hold_train: np.ndarray
    hold_train_2nd: np.ndarray
    member_syn: np.ndarray
    nonmember_syn: np.ndarray
    n_train: int
    n_holdout: int


def privacy_distances(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    seed: int = 0,
    max_queries: int = 2_000,
) -> PrivacyDistances:
    """Compute every nearest-record distance the privacy metrics need.

    Query rows are subsampled to at most `max_queries` per set (each metric is a share, median or AUC over query
    rows, so a random subsample estimates it without bias, with standard error about 0.5 / sqrt(max_queries));
    reference sets are never cut, because a copy of a row left out of the reference would look novel.
    """
    rng = np.random.default_rng(seed)
    encoder = GowerEncoder.fit(schema, train, holdout, others=[synthetic])
    e_train, e_hold, e_syn = embed(encoder, train), embed(encoder, holdout), embed(encoder, synthetic)

    def pick(n: int) -> np.ndarray:
        return np.sort(rng.choice(n, min(n, max_queries), replace=False))

    syn_q, hold_q, member_q = (
        e_syn.take(pick(len(e_syn))),
        e_hold.take(pick(len(e_hold))),
        e_train.take(pick(len(e_train))),
    )
    syn_train, syn_train_2nd = nearest(syn_q, e_train)
    syn_holdout, _ = nearest(syn_q, e_hold)
    hold_train, hold_train_2nd = nearest(hold_q, e_train)
    member_syn, _ = nearest(member_q, e_syn)
    nonmember_syn, _ = nearest(hold_q, e_syn)
    return PrivacyDistances(
        syn_train=syn_train,
        syn_train_2nd=syn_train_2nd,
        syn_holdout=syn_holdout,
        hold_train=hold_train,
        hold_train_2nd=hold_train_2nd,
        member_syn=member_syn,
        nonmember_syn=nonmember_syn,
        n_train=len(train),
        n_holdout=len(holdout),
    )


# ------------------------------------------------------------------------------------------------------ metrics
def dcr_share_excess(d: PrivacyDistances) -> Score:
    """How far the DCR share sits above its no-copy baseline, as a fraction of the room above it.

    DCR share = share of synthetic rows whose nearest real row is in train rather than holdout (ties count half),
    with distances to the full training and full holdout sets. Rows drawn from the real distribution, not copied,
    land nearest a training row with probability baseline = n_train / (n_train + n_holdout). The value is
    (share - baseline) / (1 - baseline): 0 at the baseline, 1 when every synthetic row is closest to a training row,
    so one threshold means the same thing whatever the split.
    """
    closer = (d.syn_train < d.syn_holdout).mean() + 0.5 * (d.syn_train == d.syn_holdout).mean()
    baseline = d.n_train / (d.n_train + d.n_holdout)
    excess = (closer - baseline) / (1.0 - baseline)
    return Score(
        float(excess), info={"share": float(closer), "baseline": baseline, "raw_excess": float(closer - baseline)}
    )


def _typical(values: np.ndarray) -> float:
    """Median, or the mean when more than half the values are 0 (discrete tables), so ratios stay informative."""
    med = float(np.median(values))
    return med if med > 0 else float(np.mean(values))


def dcr_ratio(d: PrivacyDistances) -> Score:
    """Median distance synthetic -> train over median distance holdout -> train (below 1: closer than fresh data)."""
    syn, hold = _typical(d.syn_train), _typical(d.hold_train)
    info = {
        "median_synthetic_to_train": float(np.median(d.syn_train)),
        "median_holdout_to_train": float(np.median(d.hold_train)),
    }
    if hold <= 0:
        return Score(None if syn > 0 else 1.0, info=info)
    return Score(syn / hold, info=info)


def _nndr(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Nearest / second-nearest distance; 1 where both are 0 (the row matches several records, singling out none)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(d2 > 0, d1 / d2, 1.0)
    return np.nan_to_num(ratio, nan=1.0)


def nndr_ratio(d: PrivacyDistances) -> Score:
    """Median nearest-neighbour distance ratio of synthetic rows over the holdout's (below 1: rows single out records).

    A synthetic row much closer to one training record than to the next one points at that record; fresh data has
    no such preference, so the holdout's median NNDR is the reference.
    """
    syn = float(np.median(_nndr(d.syn_train, d.syn_train_2nd)))
    hold = float(np.median(_nndr(d.hold_train, d.hold_train_2nd)))
    info = {"median_nndr_synthetic": syn, "median_nndr_holdout": hold}
    return Score(syn / hold if hold > 0 else None, info=info)


def mia_auc(d: PrivacyDistances) -> Score:
    """Distance-based membership-inference attack: AUC of telling training members from holdout non-members.

    The attacker scores each real record by minus its distance to the closest synthetic record (a model that memorised
    a record puts a synthetic row next to it). Members are training rows, non-members holdout rows; 0.5 means the
    synthetic data reveals nothing about membership. The AUC is not folded to max(AUC, 1 - AUC): a value below 0.5
    means members sit farther from the synthetic rows than non-members, which is no risk.
    """
    scores = -np.concatenate([d.member_syn, d.nonmember_syn])
    labels = np.r_[np.ones(d.member_syn.size), np.zeros(d.nonmember_syn.size)]
    if labels.min() == labels.max():
        return Score(None)
    return Score(
        float(roc_auc_score(labels, scores)),
        info={"members": int(d.member_syn.size), "non_members": int(d.nonmember_syn.size)},
    )


def dcr_histogram(d: PrivacyDistances, bins: int = HISTOGRAM_BINS) -> dict[str, list[float]]:
    """Counts of synthetic->train and holdout->train nearest distances on shared bins, small enough for metadata."""
    both = np.concatenate([d.syn_train, d.hold_train])
    top = float(np.quantile(both, 0.99)) if both.size else 1.0
    edges = np.linspace(0.0, top if top > 0 else 1.0, bins + 1)
    syn, _ = np.histogram(np.clip(d.syn_train, 0, edges[-1]), edges)
    hold, _ = np.histogram(np.clip(d.hold_train, 0, edges[-1]), edges)
    return {"edges": edges.round(6).tolist(), "synthetic_to_train": syn.tolist(), "holdout_to_train": hold.tolist()}
