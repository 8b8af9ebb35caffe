"""Nearest-neighbour memorisation check for synthetic images, in pixel space.

A generator that memorises returns (near-)copies of training images. Training images are themselves at some typical
distance from their nearest other training image; a synthetic image closer to a training image than the closest 5% of
those train-to-train pairs is flagged as a likely copy. The holdout's own flagged share (real images that were never
trained on) is the natural rate: a faithful generator should land near it, a copying one far above it.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import (
    NO_CACHE,  # inputs are image arrays and models: hashing them costs, and caching is keyed on content hashes later
)

from synthgate.schemas.gates import MetricResult
from synthgate.schemas.image import ImageGateThresholds
from synthgate.tasks.images.validate import ImageData

log = logging.getLogger(__name__)

COPY_QUANTILE = 0.05  # train-to-train nearest-distance quantile below which a synthetic image counts as a copy


def nearest_distances(
    queries: np.ndarray, reference: np.ndarray, *, exclude_self: bool = False, chunk: int = 512
) -> np.ndarray:
    """(n,) Euclidean distance from each query image to its nearest reference image, computed in chunks.

    Args:
        queries, reference: (n, C, H, W) and (m, C, H, W) images; compared as flat pixel vectors.
        exclude_self: queries are the reference itself; skip each row's zero distance to itself.
    """
    q = torch.as_tensor(queries, dtype=torch.float32).flatten(1)  # (n, C*H*W)
    r = torch.as_tensor(reference, dtype=torch.float32).flatten(1)  # (m, C*H*W)
    out = torch.empty(len(q))
    for start in range(0, len(q), chunk):
        d = torch.cdist(q[start : start + chunk], r)  # (b, m)
        if exclude_self:
            rows = torch.arange(d.shape[0])
            d[rows, rows + start] = float("inf")
        out[start : start + chunk] = d.min(dim=1).values
    return out.numpy()


def check_privacy(
    train: ImageData, holdout: ImageData, synthetic: ImageData, thresholds: ImageGateThresholds
) -> list[MetricResult]:
    """Memorisation share of the synthetic images, with the holdout's natural share and the distance medians.

    Measured against the full training split (every image a copy could come from), not a subsample.
    """
    d_tt = nearest_distances(train.images, train.images, exclude_self=True)  # (n_train,)
    cutoff = float(np.quantile(d_tt, COPY_QUANTILE))
    d_syn = nearest_distances(synthetic.images, train.images)  # (n_syn,)
    d_hold = nearest_distances(holdout.images, train.images)  # (n_hold,)
    share = float((d_syn < cutoff).mean()) if len(d_syn) else None
    holdout_share = float((d_hold < cutoff).mean())
    exact = int((d_syn < 1e-6).sum())
    details = {
        "cutoff_distance": cutoff,
        "holdout_share": holdout_share,
        "median_distance_synthetic_to_train": float(np.median(d_syn)) if len(d_syn) else None,
        "median_distance_holdout_to_train": float(np.median(d_hold)),
        "exact_copies": exact,
    }
    metric = MetricResult.judge(
        "memorisation_share", "privacy", share, thresholds.memorisation_share_max, "max",
        f"share of synthetic images nearer a training image than the {COPY_QUANTILE:.0%} quantile of train-to-train "
        f"nearest distances (holdout's own share: {holdout_share:.3f})",
        details,
    )  # fmt: skip
    log.info("privacy: memorisation share %.3f (holdout %.3f), %d exact copies", share or 0, holdout_share, exact)
    return [metric]


check_privacy_task = task(name="check-image-privacy", cache_policy=NO_CACHE)(check_privacy)
