"""Keep personal data and identifiers out of training, and give the synthetic table its non-modelled columns back.

Identifier, free-text and PII columns never reach a model. In the output, identifiers are regenerated (new, unique,
same dtype: they carry no information about real rows) and PII columns follow their schema `pii_action`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.table import ColumnKind, ColumnSchema, TableSchema


def training_frame(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Only the modelled columns: identifiers, free text and PII are dropped before anything is fitted."""
    return frame[[c.name for c in schema.modelled]]


def _new_identifiers(col: ColumnSchema, n: int, rng: np.random.Generator) -> pd.Series:
    """Fresh unique identifiers of the column's dtype, unrelated to real ones."""
    if col.dtype.lower().startswith(("int", "uint")):
        start = int(rng.integers(10**6, 10**7))
        return pd.Series(np.arange(start, start + n), dtype=col.dtype)
    return pd.Series([f"SYN-{i:09d}" for i in rng.permutation(10 * max(n, 1))[:n]], dtype=col.dtype)


def output_columns(schema: TableSchema) -> list[ColumnSchema]:
    """Columns of the published table: everything but PII columns whose action is `drop`."""
    return [c for c in schema.columns if not (c.pii is not None and (c.pii_action or "drop") == "drop")]


def complete_output(synthetic: pd.DataFrame, schema: TableSchema, *, seed: int) -> pd.DataFrame:
    """Add regenerated identifiers and apply PII actions, returning columns in the schema's order."""
    rng = np.random.default_rng(seed)
    n = len(synthetic)
    out: dict[str, pd.Series] = {}
    for col in output_columns(schema):
        if col.is_modelled:
            out[col.name] = synthetic[col.name].reset_index(drop=True)
        elif col.kind == ColumnKind.IDENTIFIER and col.pii is None:
            out[col.name] = _new_identifiers(col, n, rng)
        elif col.pii is None:  # non-PII free text the user kept: not modelled, so published empty
            out[col.name] = pd.Series([None] * n, dtype=col.dtype if col.dtype != "str" else "str")
        else:
            raise NotImplementedError(f"PII action {col.pii_action!r} for column {col.name!r} is not available yet")
    return pd.DataFrame(out)


complete_output_task = task(name="complete-output", cache_policy=NO_CACHE)(complete_output)
