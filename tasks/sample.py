"""Draw synthetic rows from a fitted model: unconditional, conditional (`col == value`) or class-balanced.

Conditions are guaranteed, not hoped for: models that condition natively get the encoded condition, every model's
output is then filtered, and rows are drawn in rounds until enough satisfy the conditions. A condition too rare to
meet in a bounded number of draws fails with the acceptance rate, rather than returning fewer rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.models.base import GenerativeModel, make_generator
from synthgate.models.encoders.table import MISSING, TableEncoder
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.table import ColumnKind, TableSchema, is_missing
from synthgate.tasks.protect import complete_output
from synthgate.tasks.publish import StagedParquet

logger = logging.getLogger(__name__)

BATCH_ROWS = 65_536  # rows decoded per round: bounds memory without per-row Python
MAX_ROUNDS = 50


def encode_conditions(encoder: TableEncoder, conditions: dict[str, Any]) -> torch.Tensor:
    """An (n_features,) vector with the conditioned categories one-hot and NaN everywhere else."""
    vector = torch.full((encoder.n_features_,), float("nan"))
    for name, value in conditions.items():
        col = encoder.schema.column(name)
        if col.kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            continue  # numeric conditions are met by filtering/setting after decoding
        state = next(s for s in encoder.columns_ if s.name == name)
        level = MISSING if is_missing(value) else value
        if level not in state.levels:
            raise InvalidInputError(
                f"condition {name}={value!r}: not a category of {name!r}; categories are {col.categories}"
            )
        span = encoder.span_of(name, "category")
        vector[span.start : span.stop] = 0.0
        vector[span.start + state.levels.index(level)] = 1.0
    return vector


def _check_conditions(encoder: TableEncoder, conditions: dict[str, Any]) -> None:
    for name, value in conditions.items():
        col = encoder.schema.column(name)
        if not col.is_modelled:
            raise InvalidInputError(f"condition on {name!r}: identifier, text and PII columns cannot be conditioned on")
        if col.kind in (ColumnKind.CONTINUOUS, ColumnKind.INTEGER) and not is_missing(value):
            lo, hi = col.minimum, col.maximum
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise InvalidInputError(f"condition {name}={value!r} is outside the column's range [{lo}, {hi}]")


def _satisfies(frame: pd.DataFrame, conditions: dict[str, Any]) -> np.ndarray:
    mask = np.ones(len(frame), dtype=bool)
    for name, value in conditions.items():
        col = frame[name]
        mask &= col.isna().to_numpy() if is_missing(value) else (col == value).fillna(False).to_numpy(dtype=bool)
    return mask


def sample_table(
    model: GenerativeModel,
    encoder: TableEncoder,
    n: int,
    *,
    generator: torch.Generator,
    conditions: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """`n` decoded synthetic rows; with `conditions`, every row satisfies all of them."""
    if n <= 0:
        raise InvalidInputError(f"number of rows must be positive, got {n}")
    conditions = dict(conditions or {})
    _check_conditions(encoder, conditions)
    categorical = {
        k: v
        for k, v in conditions.items()
        if encoder.schema.column(k).kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)
    }
    numeric = {k: v for k, v in conditions.items() if k not in categorical}
    native = (
        encode_conditions(encoder, categorical)
        if categorical and getattr(model, "supports_conditions", False)
        else None
    )
    parts: list[pd.DataFrame] = []
    have, drawn = 0, 0
    for _ in range(MAX_ROUNDS):
        want = n - have
        # Draw more than needed when filtering: the observed acceptance rate sizes the next round.
        rate = have / drawn if drawn else 1.0
        size = min(BATCH_ROWS, max(want, math.ceil(want / max(rate, 0.01) * 1.2)))
        raw = model.sample(size, conditions=native, generator=generator)
        frame = encoder.inverse_transform(raw, snap=True)
        drawn += size
        if categorical:
            frame = frame[_satisfies(frame, categorical)]
        for name, value in numeric.items():  # a continuous value cannot be hit by chance: it is set
            frame[name] = pd.Series([value] * len(frame), index=frame.index).astype(frame[name].dtype)
        parts.append(frame.iloc[:want])
        have += min(len(frame), want)
        if have >= n:
            break
    else:
        raise InvalidInputError(
            f"conditions {conditions} are too rare for this model: {have} of {drawn} drawn rows matched "
            f"({have / max(drawn, 1):.3%}); relax the conditions or use a model that conditions natively (gmm, gan)"
        )
    return pd.concat(parts, ignore_index=True)


def class_counts(train: pd.DataFrame, column: str, *, rows_per_class: int | None, total: int | None) -> dict[Any, int]:
    """Rows to draw per class: `rows_per_class` each, or `total` split equally (default: the largest class's count)."""
    counts = train[column].value_counts(dropna=False)
    if counts.empty:
        raise InvalidInputError(f"balance column {column!r} has no values in the training split")
    classes = list(counts.index)
    if rows_per_class is None:
        rows_per_class = math.ceil(total / len(classes)) if total else int(counts.max())
    return dict.fromkeys(classes, rows_per_class)


def sample_rows(
    model: GenerativeModel,
    encoder: TableEncoder,
    n: int,
    *,
    seed: int,
    conditions: dict[str, Any] | None = None,
    balance: str | None = None,
    rows_per_class: int | None = None,
    train: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The sampling step of a run: plain, conditional, or one conditional draw per class of `balance`."""
    generator = make_generator(seed, getattr(model, "device_", None) or "cpu")
    if balance is None:
        return sample_table(model, encoder, n, generator=generator, conditions=conditions)
    if train is None:
        raise InvalidInputError("balancing needs the training rows to know the classes")
    col = encoder.schema.column(balance)
    if col.kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
        raise InvalidInputError(f"--balance {balance}: the column is {col.kind}, balance needs a categorical column")
    parts = []
    for value, count in class_counts(train, balance, rows_per_class=rows_per_class, total=n).items():
        cond = {**(conditions or {}), balance: None if is_missing(value) else value}
        parts.append(sample_table(model, encoder, count, generator=generator, conditions=cond))
    frame = pd.concat(parts, ignore_index=True)
    order = torch.randperm(len(frame), generator=torch.Generator().manual_seed(seed)).numpy()
    return frame.iloc[order].reset_index(drop=True)


def sample_batches(
    model: GenerativeModel,
    encoder: TableEncoder,
    n: int,
    *,
    seed: int,
    conditions: dict[str, Any] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pd.DataFrame]:
    """`n` decoded rows as batches of at most `batch_rows`, from one seeded generator.

    Unconditional rows come out exactly as `sample_rows(model, encoder, n, seed=seed)` gives them (it draws in rounds
    of `BATCH_ROWS` from the same generator), so streamed and one-shot output are equal under a seed.
    """
    if n <= 0:
        raise InvalidInputError(f"number of rows must be positive, got {n}")
    generator = make_generator(seed, getattr(model, "device_", None) or "cpu")
    done = 0
    while done < n:
        size = min(batch_rows, n - done)
        yield sample_table(model, encoder, size, generator=generator, conditions=conditions)
        done += size


def stream_output(
    model: GenerativeModel,
    encoder: TableEncoder,
    schema: TableSchema,
    n: int,
    staged: StagedParquet,
    *,
    seed: int,
    keep_rows: int,
    conditions: dict[str, Any] | None = None,
    real: pd.DataFrame | None = None,
    batch_rows: int = BATCH_ROWS,
) -> pd.DataFrame:
    """Generate `n` complete output rows into `staged` batch by batch, and return the first `keep_rows` of them.

    Memory holds one batch plus the kept rows, whatever `n` is. The rows are independent draws, so the first
    `keep_rows` are a uniform sample of the output: the gates, the validity check and the report run on them.
    """
    unmodelled = None  # the real columns `complete_output` reads null shares, lengths and values to avoid from
    if real is not None:
        unmodelled = real[[c.name for c in schema.columns if not c.is_modelled and c.name in real]]
    kept: list[pd.DataFrame] = []
    have = 0
    for batch in sample_batches(model, encoder, n, seed=seed, conditions=conditions, batch_rows=batch_rows):
        out = complete_output(batch, schema, seed=seed, real=unmodelled, offset=staged.n_rows, total=n)
        staged.write(out)
        if have < keep_rows:
            kept.append(out.iloc[: keep_rows - have])
            have += len(kept[-1])
    logger.info("sample: streamed %d rows to %s; kept %d for the gates", staged.n_rows, staged.tmp, have)
    return pd.concat(kept, ignore_index=True)


sample_rows_task = task(name="sample", cache_policy=NO_CACHE)(sample_rows)
stream_output_task = task(name="sample-stream", cache_policy=NO_CACHE)(stream_output)
