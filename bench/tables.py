"""Generated mixed-type tables for benchmarks: correlated numbers, categories that shift them, missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd


def mixed_table(n_rows: int, n_columns: int = 12, *, seed: int = 0) -> pd.DataFrame:
    """A table with about two thirds continuous and one third categorical columns and planted dependencies.

    Each categorical column shifts the mean of some continuous columns, the continuous columns share a random
    correlation structure, and 2% of the values of every other continuous column are missing.
    """
    rng = np.random.default_rng(seed)
    n_cat = max(1, n_columns // 3)
    n_num = n_columns - n_cat
    cats = {f"cat_{j}": rng.integers(0, 3 + j % 5, n_rows) for j in range(n_cat)}
    loadings = rng.normal(size=(n_num, 3))
    latent = rng.normal(size=(n_rows, 3))
    numbers = latent @ loadings.T + 0.5 * rng.normal(size=(n_rows, n_num))
    for j, codes in enumerate(cats.values()):
        numbers[:, j % n_num] += 1.5 * codes  # category-dependent mean shift
    frame = pd.DataFrame({f"num_{i}": numbers[:, i].round(3) * 10 + 100 for i in range(n_num)})
    for i in range(0, n_num, 2):
        frame.loc[rng.random(n_rows) < 0.02, f"num_{i}"] = np.nan
    for name, codes in cats.items():
        frame[name] = pd.Series(np.array([f"level_{c}" for c in range(codes.max() + 1)])[codes], dtype="str")
    return frame


def train_and_fresh(n_rows: int, n_columns: int, n_fresh: int, *, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A training table and unseen rows from the same distribution, for scoring.

    `mixed_table` draws its loadings and shifts from the seed, so a table with another seed is another distribution:
    fresh rows must be cut from the same draw.
    """
    full = mixed_table(n_rows + n_fresh, n_columns, seed=seed)
    return full.iloc[:n_rows].reset_index(drop=True), full.iloc[n_rows:].reset_index(drop=True)
