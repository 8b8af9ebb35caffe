"""Siblings that share a second parent: a plane's flights fly for one airline, an order's items ship from one warehouse.

A child's non-context keys are drawn per row by default. When the real children of one context parent almost always
share the same parent under another relation (purity at or above `STICKY_PURITY`), the synthetic siblings do too:
each family takes one parent per generated cluster, chosen in proportion to the room left in the parents' family
sizes, so the sizes still add up.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STICKY_PURITY = 0.9


def sibling_purity(context: pd.Series, other: pd.Series) -> float:
    """Share of children whose other key is their family's most common one (families of one child excluded)."""
    frame = pd.DataFrame({"family": context.to_numpy(), "other": other.to_numpy()}).dropna()
    sizes = frame.groupby("family")["other"].transform("size")
    frame = frame[sizes > 1]
    if frame.empty:
        return 0.0
    modal = frame.groupby("family")["other"].agg(lambda v: v.value_counts().iloc[0])
    return float(modal.sum() / len(frame))


def sticky_picks(families: np.ndarray, pool: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One member of `pool` per family (the rows' family ids), weighted by room left in `sizes`; a pick per row.

    Args:
        families: (n_rows,) family id of each row (missing: a family of one).
        pool: candidate parents (indices).
        sizes: (len(pool),) family sizes the candidates should end up near.
        rng: the draw's randomness.
    """
    room = sizes.astype(float).copy()
    out = np.empty(families.size, dtype=pool.dtype)
    orphans = pd.isna(families)  # rows with no context parent are families of their own
    labels = np.where(orphans, [f"row {i}" for i in range(families.size)], families.astype(str))
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    for family in rng.permutation(ids.size):
        weights = np.clip(room, 0, None) + 1e-9
        choice = rng.choice(pool.size, p=weights / weights.sum())
        room[choice] -= counts[family]
        out[inverse == family] = pool[choice]
    return out
