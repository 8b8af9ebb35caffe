"""`TableSchema`: what each column of a table is, inferred from data or written by the user.

The schema drives everything downstream (validation, encoding, decoding, PII handling and the report), so it keeps
both the semantic kind of a column (continuous, categorical, ...) and its exact pandas dtype, which decoding restores.
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.errors import InvalidInputError
from schemas.pii import PIIKind, detect_pii


class ColumnKind(StrEnum):
    """The semantic kind of a column; it picks the encoder and the validation rules."""

    CONTINUOUS = "continuous"
    INTEGER = "integer"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    IDENTIFIER = "identifier"
    TEXT = "text"


PIIAction = Literal["drop", "hash", "fake"]

# Integer columns with at most this many distinct values are categorical (years, ratings, flags): their values are a
# set, not a scale, and one-hot encoding keeps them exact.
MAX_INTEGER_LEVELS = 15
# String columns with at most this many distinct values, or a small share of distinct values, are categorical.
MAX_CATEGORY_LEVELS = 100
MAX_CATEGORY_SHARE = 0.5
# Strings longer than this on average are free text, not categories.
TEXT_MEAN_LENGTH = 40

Scalar = bool | int | float | str


class ColumnSchema(BaseModel):
    """One column: its kind, dtype, nullability, observed bounds or value set, and PII flag.

    Attributes:
        kind: semantic kind; decides how the column is modelled.
        dtype: the pandas dtype name the column had on ingest and gets back on decode.
        nullable: whether missing values are allowed (and modelled with a missing indicator).
        minimum, maximum: observed (or user-given, public) bounds for numbers and datetimes (ISO strings).
        categories: the allowed value set for categorical and boolean columns.
        decimals: decimal places of the observed values; synthetic values are rounded to it.
        resolution_seconds: for datetimes, the coarsest unit (day, hour, minute, second, ms, us) that every observed
            value is a whole multiple of; synthetic timestamps are rounded to it.
        pii: the kind of personal data, if any; such columns never reach training.
        pii_action: what to do with a PII column in the output: drop it, keyed-hash it, or fill it with fake values.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: ColumnKind
    dtype: str
    nullable: bool = False
    minimum: float | str | None = None
    maximum: float | str | None = None
    categories: list[Scalar] | None = None
    decimals: int | None = None
    resolution_seconds: float | None = None
    unique: bool = False
    pii: PIIKind | None = None
    pii_action: PIIAction | None = None

    @model_validator(mode="after")
    def _check(self) -> ColumnSchema:
        if self.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN) and not self.categories:
            raise ValueError(f"column {self.name!r}: kind {self.kind} needs a non-empty 'categories' list")
        numeric = self.kind in (ColumnKind.CONTINUOUS, ColumnKind.INTEGER)
        bounded = isinstance(self.minimum, float | int) and isinstance(self.maximum, float | int)
        if numeric and bounded and self.minimum > self.maximum:
            raise ValueError(f"column {self.name!r}: minimum {self.minimum} is above maximum {self.maximum}")
        return self

    @property
    def is_modelled(self) -> bool:
        """Whether the column goes into the generative model (identifiers, free text and PII do not)."""
        return self.pii is None and self.kind not in (ColumnKind.IDENTIFIER, ColumnKind.TEXT)


class TableSchema(BaseModel):
    """The contract for one table: its columns in order, as inferred or as the user wrote them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "table"
    columns: list[ColumnSchema]
    n_rows: int | None = Field(default=None, description="rows observed when the schema was inferred")

    @model_validator(mode="after")
    def _unique_names(self) -> TableSchema:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate column names in schema: {dupes}")
        return self

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSchema:
        for col in self.columns:
            if col.name == name:
                return col
        raise InvalidInputError(f"column {name!r} is not in the schema; columns are {self.names}")

    @property
    def modelled(self) -> list[ColumnSchema]:
        return [c for c in self.columns if c.is_modelled]

    @property
    def pii_columns(self) -> list[ColumnSchema]:
        return [c for c in self.columns if c.pii is not None]

    # ----------------------------------------------------------------------------------------------- persistence
    def to_yaml(self, path: str | Path | None = None) -> str:
        """Dump to YAML (and write it to `path` when given); the file is meant to be read and edited by people."""
        data = self.model_dump(mode="json", exclude_none=True)
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> TableSchema:
        data = _read_yaml(path)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidInputError(f"{path}: not a valid table schema:\n{exc}") from exc

    def with_overrides(self, overrides: dict[str, Any] | str | Path) -> TableSchema:
        """Return a copy where the user's column entries replace the inferred ones, field by field.

        `overrides` is a mapping (or a YAML file of one) with a `columns` list or mapping; a column entry only needs
        the fields it changes, e.g. `{name: zip, kind: categorical}` or `{name: notes, pii: free_text}`.
        """
        data = _read_yaml(overrides) if isinstance(overrides, str | Path) else overrides
        entries = data.get("columns", [])
        if isinstance(entries, dict):
            entries = [{"name": k, **(v or {})} for k, v in entries.items()]
        by_name = {c.name: c for c in self.columns}
        for entry in entries:
            name = entry.get("name")
            if name not in by_name:
                raise InvalidInputError(
                    f"schema override names column {name!r}, which the data does not have; columns are {self.names}"
                )
            merged = {**by_name[name].model_dump(), **entry}
            try:
                by_name[name] = ColumnSchema.model_validate(merged)
            except ValidationError as exc:
                raise InvalidInputError(f"schema override for column {name!r} is invalid:\n{exc}") from exc
        return self.model_copy(update={"columns": [by_name[c.name] for c in self.columns]})


def _read_yaml(path: str | Path | dict[str, Any]) -> dict[str, Any]:
    if isinstance(path, dict):
        return path
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------------- inference
def _native(value: Any) -> Scalar:
    """numpy/pandas scalars to plain Python, so YAML and JSON stay readable."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return value
    return value


def _decimals(values: pd.Series, limit: int = 6) -> int:
    """Smallest number of decimal places (up to `limit`) that represents every value exactly."""
    arr = values.to_numpy(dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size > 5000:
        arr = arr[:: arr.size // 5000]
    for d in range(limit + 1):
        if np.allclose(np.round(arr, d), arr, rtol=0, atol=1e-9 * max(1.0, float(np.abs(arr).max(initial=0)))):
            return d
    return limit


_RESOLUTIONS = (86_400.0, 3_600.0, 60.0, 1.0, 1e-3, 1e-6)


def _datetime_resolution(values: pd.Series) -> float | None:
    """The coarsest of day/hour/minute/second/ms/us that divides every timestamp (so dates stay dates)."""
    if values.empty:
        return None
    micros = values.astype("datetime64[us]").astype("int64").to_numpy()
    for resolution in _RESOLUTIONS:
        step = round(resolution * 1e6)
        if (micros % step == 0).all():
            return resolution
    return 1e-6


def _looks_like_identifier(name: str, series: pd.Series) -> bool:
    non_null = series.dropna()
    if len(non_null) < 10 or non_null.nunique() < 0.98 * len(non_null):
        return False
    tokens = name.lower().replace("-", "_").split("_")
    named = any(
        t in {"id", "uuid", "guid", "key", "code", "number", "no", "ref"} for t in tokens
    ) or name.lower().endswith("id")
    if pd.api.types.is_integer_dtype(non_null):
        return named
    text = non_null.astype(str)
    return named or (text.str.len().std() < 1 and not text.str.contains(" ").any())


def infer_column(name: str, series: pd.Series) -> ColumnSchema:
    """Infer one column's schema from its values."""
    dtype = str(series.dtype)
    nullable = bool(series.isna().any())
    non_null = series.dropna()
    base: dict[str, Any] = {"name": name, "dtype": dtype, "nullable": nullable}
    n_distinct = int(non_null.nunique())
    base["unique"] = bool(len(non_null) > 0 and n_distinct == len(non_null))

    if pd.api.types.is_bool_dtype(series):
        return ColumnSchema(kind=ColumnKind.BOOLEAN, categories=[False, True], **base)
    if pd.api.types.is_datetime64_any_dtype(series):
        lo, hi = (non_null.min(), non_null.max()) if len(non_null) else (None, None)
        return ColumnSchema(
            kind=ColumnKind.DATETIME,
            resolution_seconds=_datetime_resolution(non_null),
            minimum=None if lo is None else pd.Timestamp(lo).isoformat(),
            maximum=None if hi is None else pd.Timestamp(hi).isoformat(),
            **base,
        )
    if isinstance(series.dtype, pd.CategoricalDtype):
        cats = [_native(c) for c in series.cat.categories]
        return ColumnSchema(kind=ColumnKind.CATEGORICAL, categories=cats, **base)
    if pd.api.types.is_numeric_dtype(series):
        if _looks_like_identifier(name, series):
            return ColumnSchema(kind=ColumnKind.IDENTIFIER, **base)
        integral = pd.api.types.is_integer_dtype(series)
        if integral and n_distinct <= MAX_INTEGER_LEVELS:
            cats = sorted(_native(v) for v in non_null.unique())
            return ColumnSchema(kind=ColumnKind.CATEGORICAL, categories=cats, **base)
        if not integral and n_distinct <= 2 and set(non_null.unique()) <= {0.0, 1.0}:
            return ColumnSchema(
                kind=ColumnKind.CATEGORICAL, categories=sorted(_native(v) for v in non_null.unique()), **base
            )
        lo = _native(non_null.min()) if len(non_null) else None
        hi = _native(non_null.max()) if len(non_null) else None
        kind = ColumnKind.INTEGER if integral else ColumnKind.CONTINUOUS
        decimals = 0 if integral else (_decimals(non_null) if len(non_null) else None)
        return ColumnSchema(
            kind=kind,
            minimum=None if lo is None else float(lo),
            maximum=None if hi is None else float(hi),
            decimals=decimals,
            **base,
        )

    # Strings (object / str / string dtypes).
    pii = detect_pii(name, series)
    text = non_null.astype(str)
    if pii is not None:
        return ColumnSchema(kind=ColumnKind.TEXT, pii=pii, pii_action="drop", **base)
    if _looks_like_identifier(name, series):
        return ColumnSchema(kind=ColumnKind.IDENTIFIER, **base)
    mean_len = float(text.str.len().mean()) if len(text) else 0.0
    categorical = n_distinct <= MAX_CATEGORY_LEVELS or n_distinct <= MAX_CATEGORY_SHARE * max(len(text), 1)
    if categorical and mean_len <= TEXT_MEAN_LENGTH:
        cats = sorted(_native(v) for v in non_null.unique())
        return ColumnSchema(kind=ColumnKind.CATEGORICAL, categories=cats, **base)
    # Free text is personal until shown otherwise: it is excluded from training by default.
    return ColumnSchema(kind=ColumnKind.TEXT, pii=PIIKind.FREE_TEXT, pii_action="drop", **base)


def infer_schema(frame: pd.DataFrame, *, name: str = "table") -> TableSchema:
    """Infer a `TableSchema` from a DataFrame: kinds, dtypes, nullability, bounds, value sets and PII flags."""
    if frame.shape[1] == 0:
        raise InvalidInputError(f"table {name!r} has no columns")
    bad = [c for c in frame.columns if not isinstance(c, str)]
    if bad:
        raise InvalidInputError(f"table {name!r}: column names must be strings, got {bad[:5]}; rename them first")
    columns = [infer_column(col, frame[col]) for col in frame.columns]
    return TableSchema(name=name, columns=columns, n_rows=len(frame))


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT
