"""Rules between columns: inequalities (`last_login >= signup_date`) and fixed combinations (a city in one state).

They are found at inference (`discover_constraints`), stored in `TableSchema.constraints` where a person can delete
or add one in the YAML, checked by the Great Expectations suite, and held on every synthetic row by reversible
transforms in the encoder (`models.encoders.constraints`). This module imports neither torch nor Prefect.

Discovery records only what the marginals do not already guarantee: an inequality whose ranges do not overlap holds
for any values the encoder can decode (it clips to each column's bounds), so it is left out. See
docs/decisions.md#column-rules for the thresholds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from synthgate.schemas import date_parts
from synthgate.schemas.date_parts import DatePart, discover_date_parts

if TYPE_CHECKING:
    from synthgate.schemas.table import ColumnSchema

Scalar = bool | int | float | str

# A rule needs this many rows where both columns are set before it is believed (docs/decisions.md#column-rules).
MIN_SUPPORT = 20
# A fixed combination needs each determining value seen this many times on average: a near-unique column
# "determines" everything by accident.
MIN_ROWS_PER_VALUE = 5
# An inequality is kept only when chance could not explain it: pairing the two columns' values at random would break
# it on at least this many rows, so holding on every row has odds of about exp(-10) (docs/decisions.md#column-rules).
MIN_EXPECTED_BREAKS = 10.0
# Wide tables: at most this many columns of each group are compared pairwise, and this many pairs checked exactly.
MAX_PAIR_COLUMNS = 300
MAX_PAIRS = 20_000
_NUMERIC_KINDS = ("continuous", "integer")
_CATEGORY_KINDS = ("categorical", "boolean")


class Inequality(BaseModel):
    """`high >= low` (or `high > low` when `strict`) on every row where both are set; a null side leaves it open."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["inequality"] = "inequality"
    high: str
    low: str
    strict: bool = False
    reason: str = ""

    @property
    def columns(self) -> list[str]:
        return [self.high, self.low]

    def __str__(self) -> str:
        return f"{self.high} {'>' if self.strict else '>='} {self.low}"


class FixedCombination(BaseModel):
    """`dependent` is a function of `determinant` (each city lies in one state).

    `mapping` holds the observed value of `dependent` for each value of `determinant`, keyed by `value_key(value)`
    (the text of a string, the JSON of anything else), so the YAML stays readable: `{Austin: TX, Miami: FL}`. Left
    out (`null`, e.g. a rule added by hand), the combinations are learned from the training rows and the suite
    cannot check the input's pairs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fixed_combination"] = "fixed_combination"
    determinant: str
    dependent: str
    mapping: dict[str, Scalar] | None = None
    reason: str = ""

    @property
    def columns(self) -> list[str]:
        return [self.determinant, self.dependent]

    def __str__(self) -> str:
        return f"{self.determinant} determines {self.dependent}"


Constraint = Annotated[Inequality | FixedCombination | DatePart, Field(discriminator="kind")]
Rule = Inequality | FixedCombination | DatePart


def value_key(value: Any) -> str:
    """The mapping key of a category value: strings as they are, other scalars as JSON (`1`, `true`, `2.5`)."""
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, str) else json.dumps(value)


def check_constraints(constraints: Sequence[Rule], names: Sequence[str]) -> None:
    """Raise ValueError naming a rule that refers to a column the schema lacks, or an inequality cycle."""
    known = set(names)
    for rule in constraints:
        missing = [c for c in rule.columns if c not in known]
        if missing:
            raise ValueError(f"rule '{rule}' names column(s) {missing} that the schema does not have; delete the rule")
        if rule.columns[0] == rule.columns[1]:
            raise ValueError(f"rule '{rule}' relates a column to itself; delete the rule")
    derived = [r.column for r in constraints if isinstance(r, DatePart)]
    twice = sorted({c for c in derived if derived.count(c) > 1})
    if twice:
        raise ValueError(f"column(s) {twice} are each the date part of several rules; keep one rule per column")
    edges = {(r.high, r.low) for r in constraints if isinstance(r, Inequality)}
    for high, low in edges:
        if (low, high) in edges:
            raise ValueError(
                f"rules '{high} >= {low}' and '{low} >= {high}' form a cycle (the columns would be equal); delete one"
            )


# ------------------------------------------------------------------------------------------------ discovery
def discover_constraints(frame: pd.DataFrame, columns: Sequence[ColumnSchema]) -> list[Rule]:
    """Every date part, inequality and fixed combination that holds on all rows of `frame`, with support and not
    trivially. A date part is recomputed from its datetime, so it takes part in no other rule.

    Args:
        frame: the table as read (text dates are parsed here; nothing is changed in it).
        columns: the inferred schema of each column; only modelled numbers, dates and categories are compared.

    Returns:
        The rules, date parts first, then inequalities, each with a one-line `reason` giving its evidence.
    """
    parts = discover_date_parts(frame, columns)
    derived = {r.column for r in parts}
    modelled = [c for c in columns if c.is_modelled and c.name in frame.columns and c.name not in derived]
    numeric = [c for c in modelled if c.kind in _NUMERIC_KINDS]
    dates = [c for c in modelled if c.kind == "datetime"]
    categories = [c for c in modelled if c.kind in _CATEGORY_KINDS]
    rules: list[Rule] = list(parts)
    rules += _inequalities(frame, numeric, dates=False)
    rules += _inequalities(frame, dates, dates=True)
    rules += _fixed_combinations(frame, categories)
    return rules


def numeric_values(series: pd.Series, kind: str, fmt: str | None = None) -> np.ndarray:
    """Float64 values (datetimes as seconds since the epoch, text dates parsed with `fmt` when the schema has one);
    missing or unparsable is NaN."""
    if kind == "datetime":
        return epoch_seconds(date_parts.as_datetimes(series, fmt))
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def epoch_seconds(stamps: pd.Series) -> np.ndarray:
    """Datetimes as float64 seconds since the epoch, time zones converted to UTC first; NaT is NaN."""
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    seconds = stamps.astype("datetime64[ns]").astype("int64").to_numpy(dtype=np.float64) / 1e9
    seconds[stamps.isna().to_numpy()] = np.nan
    return seconds


def _is_text(series: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series))


def _inequalities(frame: pd.DataFrame, cols: Sequence[ColumnSchema], *, dates: bool) -> list[Inequality]:
    if len(cols) < 2:
        return []
    cols = list(cols)[:MAX_PAIR_COLUMNS]
    values = np.stack([numeric_values(frame[c.name], c.kind.value, c.format) for c in cols], axis=1)  # (n_rows, k)
    present = np.isfinite(values)
    lo = np.where(present, values, np.inf).min(axis=0)
    hi = np.where(present, values, -np.inf).max(axis=0)
    # Quantile dominance is necessary for a row-wise inequality; it prunes most pairs before the exact check.
    quantiles = np.nanquantile(np.where(present, values, np.nan), np.linspace(0, 1, 11), axis=0)  # (11, k)
    candidates = []
    for i in range(len(cols)):
        for j in range(len(cols)):
            if i == j or not (np.isfinite(lo[i]) and np.isfinite(lo[j])):
                continue
            if lo[i] >= hi[j]:  # ranges do not overlap: the marginals already hold it
                continue
            if (quantiles[:, i] >= quantiles[:, j]).all() and hi[i] >= hi[j] and lo[i] >= lo[j]:
                candidates.append((i, j))
    candidates.sort(key=lambda p: abs(np.log1p(abs(quantiles[5, p[0]])) - np.log1p(abs(quantiles[5, p[1]]))))
    rules = []
    for i, j in candidates[:MAX_PAIRS]:
        both = present[:, i] & present[:, j]
        n = int(both.sum())
        if n < MIN_SUPPORT:
            continue
        a, b = values[both, i], values[both, j]
        if not (a >= b).all() or (a == b).all():
            continue
        expected = _chance_breaks(a, b)
        if expected < MIN_EXPECTED_BREAKS:
            continue  # the ranges barely overlap: holding on every row is what chance would give
        if dates and not _text_order_agrees(frame, cols[i].name, cols[j].name, both):
            continue  # the suite compares text dates as text; a layout that does not sort as time cannot be checked
        strict = bool((a > b).all())
        sign = ">" if strict else ">="
        unit = " (dates compared as times)" if dates else ""
        rules.append(
            Inequality(
                high=cols[i].name,
                low=cols[j].name,
                strict=strict,
                reason=(
                    f"{cols[i].name} {sign} {cols[j].name} on all {n:,} rows with both set{unit}; "
                    f"random pairing would break it on {expected:,.0f}"
                ),
            )
        )
    return rules


def _chance_breaks(a: np.ndarray, b: np.ndarray) -> float:
    """Rows expected to break `a >= b` if each `a` were paired with a random `b`: n times P(a_i < b_j)."""
    b_sorted = np.sort(b)
    above = len(b) - np.searchsorted(b_sorted, a, side="right")  # per a_i: how many b_j exceed it
    return float(above.sum()) / len(b)


def _text_order_agrees(frame: pd.DataFrame, high: str, low: str, rows: np.ndarray) -> bool:
    """For text dates: whether comparing the text gives the same verdict as comparing the times (ISO layouts do)."""
    a, b = frame[high], frame[low]
    if not (_is_text(a) or _is_text(b)):
        return True
    if not (_is_text(a) and _is_text(b)):
        return False
    a_text, b_text = a.astype(str).to_numpy()[rows], b.astype(str).to_numpy()[rows]
    return bool((a_text >= b_text).all())


def _fixed_combinations(frame: pd.DataFrame, cols: Sequence[ColumnSchema]) -> list[FixedCombination]:
    if len(cols) < 2:
        return []
    cols = list(cols)[:MAX_PAIR_COLUMNS]
    codes = {c.name: pd.factorize(frame[c.name], use_na_sentinel=True) for c in cols}
    rules: list[FixedCombination] = []
    found: set[tuple[str, str]] = set()
    for x in cols:
        x_codes, x_levels = codes[x.name]
        for y in cols:
            if x.name == y.name or (y.name, x.name) in found:  # one-to-one pairs are recorded once, first column first
                continue
            y_codes, y_levels = codes[y.name]
            both = (x_codes >= 0) & (y_codes >= 0)
            n = int(both.sum())
            if n < MIN_SUPPORT:
                continue
            xs, ys = x_codes[both], y_codes[both]
            n_x, n_y = len(np.unique(xs)), len(np.unique(ys))
            if n_y < 2 or n_x < 2 or n_x < n_y or n / n_x < MIN_ROWS_PER_VALUE:
                continue
            pairs = np.unique(xs.astype(np.int64) * len(y_levels) + ys)
            if len(pairs) != n_x:
                continue
            mapping = {value_key(x_levels[p // len(y_levels)]): _plain(y_levels[p % len(y_levels)]) for p in pairs}
            found.add((x.name, y.name))
            rules.append(
                FixedCombination(
                    determinant=x.name,
                    dependent=y.name,
                    mapping=mapping,
                    reason=(
                        f"each of {n_x} {x.name} values has one {y.name} ({n_y} in all) on all {n:,} rows with both "
                        f"set, {n / n_x:.0f} rows per {x.name} value"
                    ),
                )
            )
    return rules


def _plain(value: Any) -> Scalar:
    return value.item() if isinstance(value, np.generic) else value


# ----------------------------------------------------------------------------------------------- row checks
def violations(frame: pd.DataFrame, rule: Rule, kinds: dict[str, Any]) -> np.ndarray:
    """Boolean mask of the rows of `frame` that break `rule` (rows with a null side never do, except a date part
    missing beside its datetime)."""
    if isinstance(rule, DatePart):
        return date_parts.violations(frame, rule, _kind_format(kinds[rule.source])[1])
    if isinstance(rule, Inequality):
        a = numeric_values(frame[rule.high], *_kind_format(kinds[rule.high]))
        b = numeric_values(frame[rule.low], *_kind_format(kinds[rule.low]))
        both = np.isfinite(a) & np.isfinite(b)
        ok = a > b if rule.strict else a >= b
        return both & ~ok
    if rule.mapping is None:
        return np.zeros(len(frame), dtype=bool)
    x, y = frame[rule.determinant].astype(object), frame[rule.dependent].astype(object)
    lookup = {v: rule.mapping.get(value_key(v)) for v in pd.unique(x.dropna())}  # one key per distinct value
    expected = x.map(lookup)
    known = (x.notna() & y.notna() & expected.notna()).to_numpy()
    same = (y == expected).to_numpy(dtype=bool, na_value=False)
    return known & ~same


def _kind_format(column: Any) -> tuple[str, str | None]:
    """A column's kind and text-date format, from its kind name or its `ColumnSchema`."""
    if isinstance(column, str):
        return column, None
    return str(column.kind.value), getattr(column, "format", None)


def rows_holding(frame: pd.DataFrame, rules: Sequence[Rule], kinds: dict[str, Any]) -> np.ndarray:
    """Boolean mask of the rows that keep every rule whose columns are all in `frame`."""
    ok = np.ones(len(frame), dtype=bool)
    for rule in rules:
        if all(c in frame.columns for c in rule.columns):
            ok &= ~violations(frame, rule, kinds)
    return ok


def suppress_in_rules(
    rules: Sequence[Rule], suppressed: dict[str, list[Any]], replacements: dict[str, Any]
) -> list[Rule]:
    """The rules after rare categories were merged: suppressed determinants leave the mapping (they may now stand
    for several dependents), suppressed dependents become their replacement, so no rare value stays in the schema."""
    out: list[Rule] = []
    for rule in rules:
        if not isinstance(rule, FixedCombination) or rule.mapping is None:
            out.append(rule)
            continue
        gone = {value_key(v) for v in suppressed.get(rule.determinant, [])}
        rare_y = {value_key(v) for v in suppressed.get(rule.dependent, [])}
        mapping = {
            k: (replacements[rule.dependent] if value_key(v) in rare_y else v)
            for k, v in rule.mapping.items()
            if k not in gone
        }
        out.append(rule.model_copy(update={"mapping": mapping}))
    return out
