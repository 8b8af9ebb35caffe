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

from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.pii import PIIKind, detect_pii


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
    if pd.api.types.is_float_dtype(non_null) or len(non_null) < 10 or non_null.nunique() < 0.98 * len(non_null):
        return False  # a float column is a measurement, never a key
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


# ----------------------------------------------------------------------------------------- streaming profiler
# `infer_schema` needs the whole table in memory. A `ColumnProfile` instead takes the table one batch at a time and
# keeps only what `infer_column` looks at: counts, bounds, decimals, a distinct-value set (64-bit hashes, so its memory
# is 8 bytes per distinct value), the values themselves while few enough to be categories, text-length sums and a
# uniform sample for PII detection. `to_schema()` then applies the same rules as `infer_column`, so a table profiled
# in batches gets the same `ColumnSchema` as the table read whole (tests/test_scale.py checks it).
DISTINCT_HASH_LIMIT = 5_000_000  # per column; past it the distinct count and uniqueness are estimates (see below)
PII_SAMPLE = 500  # schemas.pii samples this many values; the profile keeps a uniform sample of the same size


def promote_dtype(a: str, b: str) -> str:
    """The dtype two batches of one column share (CSV and SQL chunks infer types chunk by chunk).

    An integer chunk and a float chunk (a NULL appeared) give float64, as one read of the whole column would; any other
    disagreement (dates in one chunk, text in another) falls back to strings, as pandas does for a mixed column.
    """
    if a == b:
        return a
    numeric = {"int64", "float64", "Int64", "Float64", "int32", "float32"}
    if a in numeric and b in numeric:
        return "float64"
    if "object" in (a, b):
        return "object"
    return "str"


class ColumnProfile:
    """Running statistics of one column, merged batch by batch; `to_schema()` gives `infer_column`'s answer.

    Args:
        name: the column name.
        hash_limit: the most distinct values tracked exactly. Past it, `unique` is taken as "no duplicate seen among
            the tracked values" and the distinct count as the tracked share times the rows: estimates, noted by
            `distinct_exact`.
    """

    def __init__(self, name: str, *, hash_limit: int = DISTINCT_HASH_LIMIT):
        self.name = name
        self.hash_limit = hash_limit
        self.dtype: str | None = None
        self.categorical_levels: list[Any] | None = None  # pandas categorical dtype: its categories, in order
        self.n_rows = 0
        self.n_null = 0
        self.minimum: Any = None
        self.maximum: Any = None
        self.decimals: int | None = None
        self.resolution: float | None = None
        self._hashes = np.empty(0, dtype=np.uint64)  # sorted distinct hashes of the non-null values
        self._tracked_rows = 0  # non-null rows whose hashes went into `_hashes`
        self.distinct_exact = True
        self.values: set[Any] | None = set()  # the distinct values themselves while they could still be categories
        self.text_len_sum = 0.0
        self.text_len_sq = 0.0
        self.has_space = False
        self._pii_keys = np.empty(0)
        self._pii_values: list[str] = []
        self._rng = np.random.default_rng(0)

    # ------------------------------------------------------------------------------------------------ update
    def update(self, series: pd.Series) -> None:
        """Merge one batch of the column."""
        dtype = str(series.dtype)
        self.dtype = dtype if self.dtype is None else promote_dtype(self.dtype, dtype)
        if isinstance(series.dtype, pd.CategoricalDtype):
            levels = self.categorical_levels or []
            self.categorical_levels = levels + [c for c in series.cat.categories if c not in set(levels)]
        non_null = series.dropna()
        self.n_rows += len(series)
        self.n_null += len(series) - len(non_null)
        if non_null.empty:
            return
        self._update_distinct(non_null)
        if pd.api.types.is_bool_dtype(series) or isinstance(series.dtype, pd.CategoricalDtype):
            return
        if pd.api.types.is_datetime64_any_dtype(series):
            lo, hi = non_null.min(), non_null.max()
            self.minimum = lo if self.minimum is None else min(self.minimum, lo)
            self.maximum = hi if self.maximum is None else max(self.maximum, hi)
            res = _datetime_resolution(non_null)
            self.resolution = res if self.resolution is None else min(self.resolution, res)
            return
        if pd.api.types.is_numeric_dtype(series):
            lo, hi = _native(non_null.min()), _native(non_null.max())
            self.minimum = lo if self.minimum is None else min(self.minimum, lo)
            self.maximum = hi if self.maximum is None else max(self.maximum, hi)
            if not pd.api.types.is_integer_dtype(series):
                self.decimals = max(self.decimals or 0, _decimals(non_null))
                if not _id_named(self.name):  # `_looks_like_identifier` measures float text only for unnamed columns
                    self._update_text(non_null.astype(str))
            return
        text = non_null.astype(str)
        self._update_text(text)
        self._update_pii_sample(text)

    def _update_distinct(self, non_null: pd.Series) -> None:
        if self.values is not None:
            self.values.update(non_null.unique().tolist())
            if len(self.values) > max(MAX_CATEGORY_LEVELS, MAX_INTEGER_LEVELS) and len(self.values) > 100_000:
                self.values = None  # too many to be a readable category list; the hashes still count them
        if not self.distinct_exact:
            return
        new = np.unique(pd.util.hash_array(non_null.to_numpy()))
        merged = np.concatenate([self._hashes, new])
        merged.sort(kind="stable")  # two sorted runs: timsort merges them in linear time
        keep = np.ones(len(merged), dtype=bool)
        keep[1:] = merged[1:] != merged[:-1]
        self._hashes = merged[keep]
        self._tracked_rows += len(non_null)
        if len(self._hashes) > self.hash_limit:
            self.distinct_exact = False

    def _update_text(self, text: pd.Series) -> None:
        lengths = text.str.len().to_numpy(dtype=np.float64)
        self.text_len_sum += float(lengths.sum())
        self.text_len_sq += float((lengths**2).sum())
        self.has_space = self.has_space or bool(text.str.contains(" ").any())

    def _update_pii_sample(self, text: pd.Series) -> None:
        """Bottom-k keys: a uniform sample of PII_SAMPLE values, which is every value (in order) for small columns."""
        keys = np.concatenate([self._pii_keys, self._rng.random(len(text))])
        values = self._pii_values + text.tolist()
        if len(values) > PII_SAMPLE:
            keep = np.sort(np.argpartition(keys, PII_SAMPLE)[:PII_SAMPLE])
            keys, values = keys[keep], [values[i] for i in keep]
        self._pii_keys, self._pii_values = keys, values

    # ---------------------------------------------------------------------------------------------- results
    @property
    def n_non_null(self) -> int:
        return self.n_rows - self.n_null

    @property
    def n_distinct(self) -> int:
        if self.distinct_exact:
            return len(self._hashes)
        return round(len(self._hashes) / max(self._tracked_rows, 1) * self.n_non_null)

    def _text_std(self, n: int) -> float:
        if n < 2:
            return float("nan")
        return math.sqrt(max(self.text_len_sq - self.text_len_sum**2 / n, 0.0) / (n - 1))

    def _looks_like_identifier(self, integral: bool) -> bool:
        """`_looks_like_identifier` from the merged statistics."""
        n = self.n_non_null
        if n < 10 or self.n_distinct < 0.98 * n:
            return False
        if integral:
            return _id_named(self.name)
        return _id_named(self.name) or (self._text_std(n) < 1 and not self.has_space)

    def to_schema(self) -> ColumnSchema:
        """The column's schema by `infer_column`'s rules."""
        dtype = self.dtype or "object"
        n = self.n_non_null
        base: dict[str, Any] = {"name": self.name, "dtype": dtype, "nullable": self.n_null > 0}
        base["unique"] = bool(n > 0 and self.n_distinct == n)
        if dtype in ("bool", "boolean"):
            return ColumnSchema(kind=ColumnKind.BOOLEAN, categories=[False, True], **base)
        if dtype.startswith("datetime64"):
            return ColumnSchema(
                kind=ColumnKind.DATETIME,
                resolution_seconds=self.resolution,
                minimum=None if self.minimum is None else pd.Timestamp(self.minimum).isoformat(),
                maximum=None if self.maximum is None else pd.Timestamp(self.maximum).isoformat(),
                **base,
            )
        if dtype == "category":
            return ColumnSchema(
                kind=ColumnKind.CATEGORICAL, categories=[_native(c) for c in self.categorical_levels or []], **base
            )
        if pd.api.types.is_numeric_dtype(pd.Series([], dtype=dtype)):
            integral = pd.api.types.is_integer_dtype(pd.Series([], dtype=dtype))
            if integral and self._looks_like_identifier(integral):  # a float column is never a key
                return ColumnSchema(kind=ColumnKind.IDENTIFIER, **base)
            if integral and self.n_distinct <= MAX_INTEGER_LEVELS and self.values is not None:
                return ColumnSchema(
                    kind=ColumnKind.CATEGORICAL, categories=sorted(_native(v) for v in self.values), **base
                )
            if not integral and self.n_distinct <= 2 and self.values is not None and self.values <= {0.0, 1.0}:
                return ColumnSchema(
                    kind=ColumnKind.CATEGORICAL, categories=sorted(_native(v) for v in self.values), **base
                )
            kind = ColumnKind.INTEGER if integral else ColumnKind.CONTINUOUS
            return ColumnSchema(
                kind=kind,
                minimum=None if self.minimum is None else float(self.minimum),
                maximum=None if self.maximum is None else float(self.maximum),
                decimals=0 if integral else (self.decimals if n else None),
                **base,
            )
        pii = detect_pii(self.name, pd.Series(self._pii_values, dtype=object))
        if pii is not None:
            return ColumnSchema(kind=ColumnKind.TEXT, pii=pii, pii_action="drop", **base)
        if self._looks_like_identifier(False):
            return ColumnSchema(kind=ColumnKind.IDENTIFIER, **base)
        mean_len = self.text_len_sum / n if n else 0.0
        categorical = self.n_distinct <= MAX_CATEGORY_LEVELS or self.n_distinct <= MAX_CATEGORY_SHARE * max(n, 1)
        if categorical and mean_len <= TEXT_MEAN_LENGTH and self.values is not None:
            return ColumnSchema(kind=ColumnKind.CATEGORICAL, categories=sorted(_native(v) for v in self.values), **base)
        return ColumnSchema(kind=ColumnKind.TEXT, pii=PIIKind.FREE_TEXT, pii_action="drop", **base)


def _id_named(name: str) -> bool:
    """The name half of `_looks_like_identifier`."""
    tokens = name.lower().replace("-", "_").split("_")
    return any(
        t in {"id", "uuid", "guid", "key", "code", "number", "no", "ref"} for t in tokens
    ) or name.lower().endswith("id")


def profile_schema(profiles: list[ColumnProfile], *, name: str = "table") -> TableSchema:
    """A `TableSchema` from merged column profiles (the streaming counterpart of `infer_schema`)."""
    if not profiles:
        raise InvalidInputError(f"table {name!r} has no columns")
    n_rows = profiles[0].n_rows
    return TableSchema(name=name, columns=[p.to_schema() for p in profiles], n_rows=n_rows)
