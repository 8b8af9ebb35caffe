"""Schema inference: one rule tree, applied to running column statistics, whole table or batch by batch.

A `ColumnProfile` takes a column one batch at a time and keeps only what the rules look at: counts, bounds, decimals,
a distinct-value set (64-bit hashes, 8 bytes per distinct value), the values themselves while few enough to be
categories, text-length sums, the text date formats every value still matches, and a uniform sample for PII and key
format detection. `to_schema()` applies the rules. `infer_schema` is that profiler run on one batch (the whole frame),
so a table read in batches and the same table read whole get the same schema (tests/test_scale.py checks it).

Every column's schema carries a one-line `reason`, shown by `synthgate schema infer`, so a person can check each
inference and correct it in the schema file.
"""

from __future__ import annotations

import math
import re
import string
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from synthgate.schemas.constraints import discover_constraints
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.pii import PIIKind, explain_pii, organisation_evidence, pii_from_name
from synthgate.schemas.table import ColumnKind, ColumnSchema, TableSchema, plain_scalar

# Integer columns with at most this many distinct values are categorical (years, ratings, flags): their values are a
# set, not a scale, and one-hot encoding keeps them exact.
MAX_INTEGER_LEVELS = 15
# String columns with at most this many distinct values, or a small share of distinct values, are categorical.
MAX_CATEGORY_LEVELS = 100
MAX_CATEGORY_SHARE = 0.5
# Strings longer than this on average are free text, not categories.
TEXT_MEAN_LENGTH = 40
# A key may repeat a little (a sparse code drawn from a small space collides now and then); below this share of
# distinct values a column is a category or a measurement, not a key.
NEAR_UNIQUE = 0.95  # docs/decisions.md#key-inference
DISTINCT_HASH_LIMIT = 5_000_000  # per column; past it the distinct count and uniqueness are estimates (see below)
SAMPLE_SIZE = 500  # values kept (uniformly) for PII and key-format detection; schemas.pii samples as many
KEY_WORDS = {"id", "uuid", "guid", "key", "code", "ref", "number", "no", "num"}

# Text date/time formats tried, most common first; the first that every value parses with (and prints back as
# written) is kept, so output is written in the source's own format. Day-first and month-first both parse days up
# to 12: month-first wins the tie, and the reason names the format so a person can correct it.
DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%d.%m.%Y",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d-%b-%Y",
    "%b %d, %Y",
)
_DATE_LIKE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|^\d{1,2}-[A-Za-z]{3}-\d{4}|^[A-Za-z]{3} \d{1,2}, \d{4}")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_UUID_HEX = re.compile(r"^[0-9a-fA-F]{32}$")
# Pattern symbols for the varying positions of a fixed-shape key: a digit, an upper-case letter, a lower-case letter.
PATTERN_CLASSES = {"#": string.digits, "@": string.ascii_uppercase, "?": string.ascii_lowercase}
_RESOLUTIONS = ((86_400.0, "day"), (3_600.0, "hour"), (60.0, "minute"), (1.0, "second"), (1e-3, "ms"), (1e-6, "us"))


# ------------------------------------------------------------------------------------------------- helpers
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


def _datetime_resolution(values: pd.Series) -> float | None:
    """The coarsest of day/hour/minute/second/ms/us that divides every timestamp (so dates stay dates)."""
    if values.empty:
        return None
    micros = values.astype("datetime64[us]").astype("int64").to_numpy()
    for resolution, _ in _RESOLUTIONS:
        if (micros % round(resolution * 1e6) == 0).all():
            return resolution
    return 1e-6


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


def _name_tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [t for t in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if t]


def key_name_reason(name: str) -> str | None:
    """Why a column's name reads as a key (`name ends in _id`), or None: `paid` or `valid` are not keys."""
    tokens = _name_tokens(name)
    if not tokens:
        return None
    if tokens[-1] in KEY_WORDS:
        return f"name ends in _{tokens[-1]}" if len(tokens) > 1 else f"name is {tokens[-1]!r}"
    hit = next((t for t in tokens if t in KEY_WORDS), None)
    return None if hit is None else f"name contains {hit!r}"


def key_format(values: list[str]) -> str | None:
    """The format a key's values share: `uuid`/`UUID` (hyphenated), `uuid-hex`/`UUID-HEX`, a fixed pattern such as
    `REF-####` (`#` a digit, `@` an upper-case and `?` a lower-case letter, anything else literal), or None."""
    if len(values) < 10:
        return None
    lower = any(c in "abcdef" for v in values[:50] for c in v)
    if all(_UUID.match(v) for v in values):
        return "uuid" if lower else "UUID"
    if all(_UUID_HEX.match(v) for v in values) and any(not v.isdigit() for v in values):
        return "uuid-hex" if lower else "UUID-HEX"
    if len({len(v) for v in values}) != 1:
        return None
    pattern = []
    for chars in zip(*values, strict=True):
        first = chars[0]
        if all(c == first for c in chars):
            if first in PATTERN_CLASSES or first.isspace():
                return None
            pattern.append(first)
            continue
        symbol = next((s for s, allowed in PATTERN_CLASSES.items() if all(c in allowed for c in chars)), None)
        if symbol is None:
            return None
        pattern.append(symbol)
    text = "".join(pattern)
    return text if "#" in text else None


def _parses(value: str, fmt: str) -> bool:
    try:
        datetime.strptime(value, fmt)
    except ValueError:
        return False
    return True


def _unique_words(share: float) -> str:
    return "100% unique" if share >= 1.0 else f"{math.floor(share * 1000) / 10:g}% unique"


def _resolution_word(resolution: float | None) -> str:
    return next((word for step, word in _RESOLUTIONS if resolution is not None and resolution >= step), "us")


# ------------------------------------------------------------------------------------------------ profiler
class ColumnProfile:
    """Running statistics of one column, merged batch by batch; `to_schema()` applies the inference rules.

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
        self.date_formats: list[str] | None = None  # text columns: formats every value so far parses with
        self._hashes = np.empty(0, dtype=np.uint64)  # sorted distinct hashes of the non-null values
        self._tracked_rows = 0  # non-null rows whose hashes went into `_hashes`
        self.distinct_exact = True
        self.values: set[Any] | None = set()  # the distinct values themselves while they could still be categories
        self.text_len_sum = 0.0
        self._sample_keys = np.empty(0)
        self.sample: list[str] = []  # a uniform sample of the text values, for PII and key-format detection
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
            self._update_time(non_null)
            return
        if pd.api.types.is_numeric_dtype(series):
            self._update_bounds(plain_scalar(non_null.min()), plain_scalar(non_null.max()))
            if not pd.api.types.is_integer_dtype(series):
                self.decimals = max(self.decimals or 0, _decimals(non_null))
            return
        text = non_null.astype(str)
        self.text_len_sum += float(text.str.len().sum())
        self._update_sample(text)
        self._update_date_formats(text)

    def _update_bounds(self, lo: Any, hi: Any) -> None:
        self.minimum = lo if self.minimum is None else min(self.minimum, lo)
        self.maximum = hi if self.maximum is None else max(self.maximum, hi)

    def _update_time(self, stamps: pd.Series) -> None:
        self._update_bounds(stamps.min(), stamps.max())
        res = _datetime_resolution(stamps)
        self.resolution = res if self.resolution is None else min(self.resolution, res)

    def _update_date_formats(self, text: pd.Series) -> None:
        """Keep the date formats every value parses with; record bounds and resolution under the first of them."""
        if self.date_formats is None:
            first = text.iloc[0]
            plausible = len(first) <= 32 and _DATE_LIKE.match(first)
            self.date_formats = [f for f in DATE_FORMATS if _parses(first, f)] if plausible else []
        if not self.date_formats:
            return
        kept, parsed = [], None
        for fmt in self.date_formats:
            stamps = pd.to_datetime(text, format=fmt, errors="coerce")
            if stamps.notna().all():
                kept.append(fmt)
                parsed = stamps if parsed is None else parsed
        # Prefer a format that prints the values back exactly as written (zero-padding, fraction digits).
        head = text.iloc[:SAMPLE_SIZE]
        exact = [f for f in kept if (pd.to_datetime(head, format=f).dt.strftime(f) == head).all()]
        self.date_formats = exact + [f for f in kept if f not in exact]
        if parsed is not None:
            if exact and exact[0] != kept[0]:
                parsed = pd.to_datetime(text, format=exact[0])
            self._update_time(parsed)

    def _update_distinct(self, non_null: pd.Series) -> None:
        if self.values is not None:
            self.values.update(non_null.unique().tolist())
            if len(self.values) > 100_000:
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

    def _update_sample(self, text: pd.Series) -> None:
        """Bottom-k keys: a uniform sample of SAMPLE_SIZE values, which is every value (in order) for small columns."""
        keys = np.concatenate([self._sample_keys, self._rng.random(len(text))])
        values = self.sample + text.tolist()
        if len(values) > SAMPLE_SIZE:
            keep = np.sort(np.argpartition(keys, SAMPLE_SIZE)[:SAMPLE_SIZE])
            keys, values = keys[keep], [values[i] for i in keep]
        self._sample_keys, self.sample = keys, values

    # ---------------------------------------------------------------------------------------------- results
    @property
    def n_non_null(self) -> int:
        return self.n_rows - self.n_null

    @property
    def n_distinct(self) -> int:
        if self.distinct_exact:
            return len(self._hashes)
        return round(len(self._hashes) / max(self._tracked_rows, 1) * self.n_non_null)

    def _categories(self) -> list[Any]:
        return sorted(plain_scalar(v) for v in self.values or ())

    def to_schema(self) -> ColumnSchema:
        """The column's schema, with the rule that decided it in `reason`."""
        dtype = self.dtype or "object"
        n = self.n_non_null
        share = self.n_distinct / n if n else 0.0
        base: dict[str, Any] = {"name": self.name, "dtype": dtype, "nullable": self.n_null > 0}
        base["unique"] = bool(n > 0 and self.n_distinct == n)
        if n == 0:
            return ColumnSchema(kind=ColumnKind.EMPTY, reason="empty: no values; kept empty in the output", **base)
        if dtype.startswith("datetime64"):
            return self._datetime(base, f"datetime: dtype {dtype}")
        if dtype == "category":
            levels = [plain_scalar(c) for c in self.categorical_levels or []]
            reason = f"categorical: pandas category dtype with {len(levels)} levels"
            return ColumnSchema(kind=ColumnKind.CATEGORICAL, categories=levels, reason=reason, **base)
        if self.n_distinct == 1 and self.values is not None:  # one level, so the output stays constant
            reason = f"categorical: one value {self._categories()[0]!r} (constant)"
            return ColumnSchema(kind=ColumnKind.CATEGORICAL, categories=self._categories(), reason=reason, **base)
        if dtype in ("bool", "boolean"):
            return ColumnSchema(
                kind=ColumnKind.BOOLEAN, categories=[False, True], reason=f"boolean: dtype {dtype}", **base
            )
        if pd.api.types.is_numeric_dtype(pd.Series([], dtype=dtype)):
            return self._numeric(base, dtype, share)
        return self._text(base, share)

    def _datetime(self, base: dict[str, Any], reason: str, fmt: str | None = None) -> ColumnSchema:
        return ColumnSchema(
            kind=ColumnKind.DATETIME,
            resolution_seconds=self.resolution,
            minimum=None if self.minimum is None else pd.Timestamp(self.minimum).isoformat(),
            maximum=None if self.maximum is None else pd.Timestamp(self.maximum).isoformat(),
            format=fmt,
            reason=f"{reason}, resolution {_resolution_word(self.resolution)}",
            **base,
        )

    def _numeric(self, base: dict[str, Any], dtype: str, share: float) -> ColumnSchema:
        integral = pd.api.types.is_integer_dtype(pd.Series([], dtype=dtype))
        named = key_name_reason(self.name)
        lo, hi = float(self.minimum), float(self.maximum)
        # A float is a measurement, never a key: an amount with cents can be all distinct.
        if integral and named and self.n_non_null >= 10 and share >= NEAR_UNIQUE:
            reason = f"identifier: {named}, {_unique_words(share)}"
            return ColumnSchema(kind=ColumnKind.IDENTIFIER, minimum=lo, maximum=hi, reason=reason, **base)
        if integral and self.n_distinct <= MAX_INTEGER_LEVELS and self.values is not None:
            reason = f"categorical: integer with {self.n_distinct} distinct values (at most {MAX_INTEGER_LEVELS})"
            return ColumnSchema(kind=ColumnKind.CATEGORICAL, categories=self._categories(), reason=reason, **base)
        if not integral and self.n_distinct <= 2 and self.values is not None and self.values <= {0.0, 1.0}:
            reason = "categorical: float holding only 0 and 1"
            return ColumnSchema(kind=ColumnKind.CATEGORICAL, categories=self._categories(), reason=reason, **base)
        if integral:
            reason = f"integer: {dtype} in [{lo:g}, {hi:g}]"
            return ColumnSchema(kind=ColumnKind.INTEGER, minimum=lo, maximum=hi, decimals=0, reason=reason, **base)
        reason = f"continuous: float with {self.decimals} decimal{'' if self.decimals == 1 else 's'}"
        return ColumnSchema(
            kind=ColumnKind.CONTINUOUS, minimum=lo, maximum=hi, decimals=self.decimals, reason=reason, **base
        )

    def _text(self, base: dict[str, Any], share: float) -> ColumnSchema:
        if self.date_formats:
            fmt = self.date_formats[0]
            return self._datetime(base, f"datetime: text in format {fmt}", fmt)
        pii = explain_pii(self.name, pd.Series(self.sample, dtype=object))
        if pii is not None and pii[0] != PIIKind.FREE_TEXT:
            reason = f"personal data ({pii[0].value}): {pii[1]}; faked in the output"
            return ColumnSchema(kind=ColumnKind.TEXT, pii=pii[0], pii_action="fake", reason=reason, **base)
        # A `name` column that content clears says why, so a person who disagrees knows what to override.
        cleared = organisation_evidence(pd.Series(self.sample, dtype=object))
        note = f"; not person names: {cleared}" if cleared and pii_from_name(self.name) == PIIKind.PERSON_NAME else ""
        near_unique = self.n_non_null >= 10 and share >= NEAR_UNIQUE
        fmt = key_format(self.sample) if near_unique else None
        named = key_name_reason(self.name)
        if near_unique and (named or fmt):
            evidence = ", ".join(p for p in (named, fmt and f"format {fmt}") if p)
            reason = f"identifier: {evidence}, {_unique_words(share)}{note}"
            return ColumnSchema(kind=ColumnKind.IDENTIFIER, format=fmt, reason=reason, **base)
        n = self.n_non_null
        mean_len = self.text_len_sum / n
        categorical = self.n_distinct <= MAX_CATEGORY_LEVELS or self.n_distinct <= MAX_CATEGORY_SHARE * n
        categorical = categorical and not (note and near_unique)  # 16 airlines, one row each: names, not levels
        if categorical and mean_len <= TEXT_MEAN_LENGTH and self.values is not None:
            reason = f"categorical: text with {self.n_distinct} distinct values{note}"
            return ColumnSchema(kind=ColumnKind.CATEGORICAL, categories=self._categories(), reason=reason, **base)
        # Free text is personal until shown otherwise: it never reaches a model, and the output holds fake text.
        reason = f"text: free text, mean length {mean_len:.0f} characters; fake text in the output{note}"
        return ColumnSchema(kind=ColumnKind.TEXT, pii=PIIKind.FREE_TEXT, pii_action="fake", reason=reason, **base)


# ------------------------------------------------------------------------------------------------ entries
def _check_columns(columns: list[Any], name: str) -> None:
    if not columns:
        raise InvalidInputError(f"table {name!r} has no columns")
    bad = [c for c in columns if not isinstance(c, str)]
    if bad:
        raise InvalidInputError(f"table {name!r}: column names must be strings, got {bad[:5]}; rename them first")


def infer_column(name: str, series: pd.Series) -> ColumnSchema:
    """One column's schema: the profiler run on the whole column as one batch."""
    profile = ColumnProfile(name)
    profile.update(series)
    return profile.to_schema()


def infer_schema(frame: pd.DataFrame, *, name: str = "table") -> TableSchema:
    """Infer a `TableSchema` (kinds, dtypes, nullability, bounds, value sets, formats, PII flags and reasons)."""
    _check_columns(list(frame.columns), name)
    columns = [infer_column(col, frame[col]) for col in frame.columns]
    return TableSchema(name=name, columns=columns, n_rows=len(frame), constraints=discover_constraints(frame, columns))


def profile_schema(profiles: list[ColumnProfile], *, name: str = "table") -> TableSchema:
    """A `TableSchema` from merged column profiles (what `infer_schema` gives on the table read whole)."""
    _check_columns([p.name for p in profiles], name)
    return TableSchema(name=name, columns=[p.to_schema() for p in profiles], n_rows=profiles[0].n_rows)
