"""Seeded train/holdout split: the holdout never reaches training, and fidelity and privacy are measured on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.schemas.errors import InvalidInputError

MIN_TRAIN_ROWS = 10


def split_holdout(frame: pd.DataFrame, *, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shuffle with `seed` and cut off `fraction` of the rows (at least one) as the holdout."""
    n = len(frame)
    n_holdout = max(1, round(n * fraction))
    if n - n_holdout < MIN_TRAIN_ROWS:
        raise InvalidInputError(
            f"the table has {n} rows: too few to keep a holdout of {n_holdout} and train on at least {MIN_TRAIN_ROWS}"
        )
    order = np.random.default_rng(seed).permutation(n)
    holdout = frame.iloc[np.sort(order[:n_holdout])].reset_index(drop=True)
    train = frame.iloc[np.sort(order[n_holdout:])].reset_index(drop=True)
    return train, holdout


split_holdout_task = task(name="split", cache_policy=NO_CACHE)(split_holdout)
