"""Keys of several columns: a table keyed by (origin, time_hour), children that reference that tuple.

A composite key is a tuple. Synthesis works on one-column links (`tasks.relational`), so a checked database is
flattened before it and restored after it (docs/decisions.md#composite-keys):

- A table with a composite primary key gains a surrogate key column (its row number), which becomes its primary key.
  Its key columns then split in two: a column that is itself a foreign key (weather.origin -> airports.faa) is
  assigned through that relation, like any foreign key; the other columns (time_hour) are modelled as values.
- A child that references a tuple gains a surrogate foreign key column (the referenced row's surrogate), which links
  it through the one-column machinery. Its own copies of the tuple's columns are not modelled: after synthesis they
  are copied from the referenced synthetic row, so the flight's origin is its weather row's origin. Where such a
  column is also a foreign key of its own (flights.origin -> airports.faa), that relation still assigns it on rows
  without a referenced tuple, and the parent's column must reference the same table, so both links hold at once.
- Restoring makes every synthetic tuple unique: within each combination of the other key columns, the finest value
  column (numbers and datetimes on the source's grid, an hour for time_hour) is moved to the nearest free grid
  points in order; a column that numbers the rows of each group (line 1, 2, 3 of an order) is numbered again in the
  order the model drew it; text values that repeat are replaced by fresh codes in the column's pattern.

Shapes this cannot do well are refused by `composite_problems`, each with its fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synthgate.schemas.inference import infer_column
from synthgate.schemas.relations import DatabaseSchema, Relation, TableKeys
from synthgate.schemas.table import ColumnKind
from synthgate.tasks.keys import regenerate_key

SURROGATE = "sg_row_key"  # a composite-keyed table's surrogate primary key
EPOCH = pd.Timestamp(0, tz="UTC")
SEPARATOR = "\x1f"  # between a tuple's values in its comparable text; never in a key value


def surrogate_ref(index: int) -> str:
    """The child column holding the referenced row's surrogate for composite relation `index`."""
    return f"sg_row_ref_{index}"


def comparable(series: pd.Series) -> pd.Series:
    """Key values as one type (an integer key and its float copy agree), missing values kept as missing."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.astype("float64")
    return series.astype(object).where(series.notna(), None).map(lambda v: v if v is None else str(v))


def tuple_values(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One comparable value per row for a key of one or several columns; missing where any part is missing."""
    if len(columns) == 1:
        return comparable(frame[columns[0]]).reset_index(drop=True)
    parts = [comparable(frame[c]).reset_index(drop=True) for c in columns]
    missing = np.logical_or.reduce([p.isna().to_numpy() for p in parts])
    text = parts[0].astype(str)
    for part in parts[1:]:
        text = text + SEPARATOR + part.astype(str)
    return text.mask(missing)


def single_relations(schema: DatabaseSchema, table: str) -> dict[str, Relation]:
    """The table's one-column foreign keys, by column."""
    return {r.columns[0]: r for r in schema.relations_of(table) if len(r.columns) == 1}


def composite_relations(schema: DatabaseSchema) -> list[Relation]:
    return [r for r in schema.relations if len(r.columns) > 1]


def composite_key(schema: DatabaseSchema, table: str) -> list[str]:
    """The table's key of several columns: its primary key, or the columns a composite relation references."""
    pk = schema.primary_key(table)
    if len(pk) > 1:
        return pk
    referenced = [r.parent_columns for r in composite_relations(schema) if r.parent == table]
    return list(referenced[0]) if referenced and not pk else []


def composite_problems(schema: DatabaseSchema, tables: dict[str, pd.DataFrame]) -> list[str]:
    """Shapes of composite keys that synthesis refuses, each with the table, columns and fix."""
    problems = []
    for rel in composite_relations(schema):
        key = composite_key(schema, rel.parent)
        if sorted(rel.parent_columns) != sorted(key):
            problems.append(
                f"relation {rel.name}: references {rel.parent_columns}, not the primary key {key} of "
                f"{rel.parent!r}; a child must reference the whole key. Fix: reference {key} or correct "
                f"`tables: {{{rel.parent}: {{primary_key: ...}}}}` in relations.yaml"
            )
        own = single_relations(schema, rel.child)
        theirs = single_relations(schema, rel.parent)
        for col, pcol in zip(rel.columns, rel.parent_columns, strict=True):
            mine = own.get(col)
            if mine is None:
                continue
            other = theirs.get(pcol)
            if other is None or (other.parent, other.parent_columns) != (mine.parent, mine.parent_columns):
                problems.append(
                    f"table {rel.child!r}, column {col!r}: references {mine.parent}.{mine.parent_columns[0]} and is "
                    f"part of {rel.name}, but {rel.parent}.{pcol} does not reference {mine.parent}.{mine.parent_columns[0]}"
                    f", so one copy could not keep both links. Fix: declare {rel.parent}.{pcol} -> "
                    f"{mine.parent}.{mine.parent_columns[0]} in relations.yaml, or `ignore` one of the two relations"
                )
    seen: dict[tuple[str, str], str] = {}
    for rel in composite_relations(schema):
        for col in rel.columns:
            if (rel.child, col) in seen:
                problems.append(
                    f"table {rel.child!r}, column {col!r}: part of two composite foreign keys ({seen[(rel.child, col)]}"
                    f" and {rel.name}); a value copied from two parent rows cannot agree with both. Fix: `ignore` one"
                )
            seen[(rel.child, col)] = rel.name
    for table in tables:
        key = composite_key(schema, table)
        if not key:
            continue
        fks = single_relations(schema, table)
        copied = {c for r in composite_relations(schema) if r.child == table for c in r.columns}
        free = [c for c in key if c not in fks and c in tables[table]]
        booleans = [c for c in free if pd.api.types.is_bool_dtype(tables[table][c])]
        if booleans:
            problems.append(
                f"table {table!r}: key columns {booleans} are booleans, whose combinations cannot be kept unique. "
                "Fix: leave them out of the primary key in relations.yaml"
            )
        if set(key) & copied:
            problems.append(
                f"table {table!r}: primary key columns {sorted(set(key) & copied)} are also copied from a parent's "
                "composite key (a one-to-one extension), which synthesis does not support. Fix: give the table a "
                "primary key of its own in relations.yaml, or `ignore` the composite relation"
            )
        if not free and schema.children_of(table):
            problems.append(
                f"table {table!r}: every column of its key {key} is a foreign key, and tables reference it; repeated "
                "pairs would have to be dropped under their children. Fix: add a value column to the key, or "
                "`ignore` the relations that reference it"
            )
    return problems


@dataclass
class CompositePlan:
    """How a database was flattened, so its synthetic tables can be restored.

    Attributes:
        columns: per table, the source's columns in order (restored tables follow them).
        keys: per composite-keyed table, its key columns.
        refs: composite relations with the surrogate column their child gained.
        dropped: per child table, the tuple columns it does not model (copied back from the parent).
        overwritten: per child table, foreign-key columns that the copy from a parent's tuple overrides.
        fixed: per composite-keyed table, key columns restoring must not move (foreign keys, copied columns).
    """

    columns: dict[str, list[str]]
    keys: dict[str, list[str]] = field(default_factory=dict)
    refs: list[tuple[Relation, str]] = field(default_factory=list)
    dropped: dict[str, list[str]] = field(default_factory=dict)
    overwritten: dict[str, list[str]] = field(default_factory=dict)
    fixed: dict[str, list[str]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # a surrogate relation's name -> the composite one's

    @property
    def empty(self) -> bool:
        return not self.keys


def flatten(tables: dict[str, pd.DataFrame], schema: DatabaseSchema) -> tuple[dict, DatabaseSchema, CompositePlan]:
    """Tables and schema with one-column keys only (see the module docstring); checked tables in, copies out."""
    plan = CompositePlan(columns={t: list(f.columns) for t, f in tables.items()})
    tables = dict(tables)
    keys = dict(schema.tables)
    for table in tables:
        key = composite_key(schema, table)
        if key:
            plan.keys[table] = key
            copied = {c for r in composite_relations(schema) if r.child == table for c in r.columns}
            plan.fixed[table] = [c for c in key if c in single_relations(schema, table) or c in copied]
            tables[table] = tables[table].assign(**{SURROGATE: np.arange(len(tables[table]), dtype=np.int64)})
            keys[table] = TableKeys(primary_key=[SURROGATE])
    relations = [r for r in schema.relations if len(r.columns) == 1]
    for i, rel in enumerate(composite_relations(schema)):
        parent = tables[rel.parent]
        lookup = pd.Series(parent[SURROGATE].to_numpy(), index=tuple_values(parent, rel.parent_columns).to_numpy())
        ref = surrogate_ref(i)
        child = tables[rel.child]
        refs = tuple_values(child, rel.columns).map(lookup)
        fks = single_relations(schema, rel.child)
        plan.overwritten.setdefault(rel.child, []).extend(c for c in rel.columns if c in fks)
        free = [c for c in rel.columns if c not in fks]
        plan.dropped.setdefault(rel.child, []).extend(free)
        tables[rel.child] = child.drop(columns=free).assign(**{ref: pd.array(refs.to_numpy(), dtype="Int64")})
        plan.refs.append((rel, ref))
        relations.append(
            Relation(child=rel.child, columns=[ref], parent=rel.parent, parent_columns=[SURROGATE],
                     on_orphans=rel.on_orphans, source=rel.source, evidence=rel.evidence)
        )  # fmt: skip
        plan.names[relations[-1].name] = rel.name
    flat = schema.model_copy(update={"tables": keys, "relations": relations})
    return tables, flat, plan


def restore(tables: dict[str, pd.DataFrame], order: list[str], real: dict[str, pd.DataFrame], plan: CompositePlan,
            *, seed: int) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Synthetic tables in the source's columns: unique key tuples, children's tuples copied from their parent row.

    Args:
        tables: the synthetic flattened tables.
        order: parents before children.
        real: the checked real tables (formats and grids are read from them).
        plan: from `flatten`.
        seed: for the fresh codes of repeated text values.
    """
    out = dict(tables)
    for table in order:
        frame = out[table].reset_index(drop=True).copy()
        for rel, ref in (p for p in plan.refs if p[0].child == table):
            parent = out[rel.parent]
            rows = pd.Series(np.arange(len(parent)), index=parent[SURROGATE].to_numpy())
            where = frame[ref].notna().to_numpy()
            at = rows.reindex(frame[ref][where].astype("int64").to_numpy()).to_numpy()
            for col, pcol in zip(rel.columns, rel.parent_columns, strict=True):
                values = np.array(frame[col], dtype=object) if col in frame else np.full(len(frame), None, object)
                values[where] = parent[pcol].astype(object).to_numpy()[at]
                frame[col] = _like(pd.Series(values), real[table][col])
        if table in plan.keys:
            frame = unique_tuples(frame, plan.keys[table], real[table], fixed=plan.fixed[table], seed=seed)
        out[table] = frame
    return {t: out[t][plan.columns[t]] for t in out}


def _like(values: pd.Series, real: pd.Series) -> pd.Series:
    """Copied values in the real column's dtype (a nullable integer where some are missing)."""
    if pd.api.types.is_integer_dtype(real):
        return pd.array(pd.to_numeric(values), dtype="Int64" if values.isna().any() else real.dtype)
    if pd.api.types.is_float_dtype(real) or pd.api.types.is_datetime64_any_dtype(real):
        return values.astype(real.dtype)
    if isinstance(real.dtype, pd.StringDtype):
        return values.astype(real.dtype)
    return values.astype(object).where(values.notna(), None)


def unique_tuples(
    frame: pd.DataFrame, key: list[str], real: pd.DataFrame, *, fixed: list[str], seed: int
) -> pd.DataFrame:
    """`frame` with its `key` tuples made unique by moving its finest free value column (see the module docstring)."""
    fks = set(fixed)
    free = [c for c in key if c not in fks and c != SURROGATE]
    if not free:
        return frame
    moved = max(free, key=lambda c: real[c].nunique())
    others = [c for c in key if c != moved]
    start = _sequence_start(real, moved, others)
    if start is None and not tuple_values(frame, key).duplicated().any():
        return frame
    group = tuple_values(frame, others) if others else pd.Series(0, index=frame.index)
    col = infer_column(moved, real[moved])
    frame = frame.copy()
    if start is not None:  # line numbers 1..k in every group: numbered again, in the order the model drew them
        drawn = pd.to_numeric(frame[moved], errors="coerce")
        rank = drawn.groupby(group.fillna("").to_numpy()).rank(method="first").fillna(1).to_numpy(np.int64)
        frame[moved] = _like(pd.Series(start + rank - 1), real[moved])
    elif col.kind == ColumnKind.DATETIME:
        frame[moved] = _grid_unique_datetimes(frame[moved], real[moved], group, col.format, col.resolution_seconds)
    elif pd.api.types.is_numeric_dtype(real[moved]):
        values = _grid_unique(pd.to_numeric(frame[moved]).to_numpy(float), _numbers(real[moved]), group)
        frame[moved] = _like(pd.Series(values), real[moved])
    else:
        repeated = tuple_values(frame, key).duplicated().to_numpy()
        fresh = regenerate_key(moved, real[moved], int(repeated.sum()), seed=seed)
        values = np.array(frame[moved], dtype=object)
        values[repeated] = fresh.astype(object).to_numpy()
        frame[moved] = values
    return frame


def _sequence_start(real: pd.DataFrame, column: str, others: list[str]) -> int | None:
    """The first number when `column` counts rows 1..k (or 0..k-1) within every group of `others`; else None."""
    values = real[column]
    if not others or not pd.api.types.is_integer_dtype(values) or values.isna().any() or values.empty:
        return None
    rank = values.groupby(tuple_values(real, others).fillna("").to_numpy()).rank(method="first").to_numpy()
    start = int(values.min())
    return start if (values.to_numpy() == start + rank - 1).all() else None


def _numbers(real: pd.Series) -> np.ndarray:
    return pd.to_numeric(real, errors="coerce").dropna().to_numpy(float)


def _grid_unique_datetimes(values: pd.Series, real: pd.Series, group: pd.Series, fmt: str | None,
                           resolution: float | None) -> pd.Series:  # fmt: skip
    """Datetimes (datetime64 or text in `fmt`) moved onto the source's grid, unique within each group."""
    text = not pd.api.types.is_datetime64_any_dtype(real)

    def seconds(series: pd.Series) -> np.ndarray:
        parsed = pd.to_datetime(series, format=fmt if text else None, errors="coerce", utc=True)
        return ((parsed - EPOCH) / pd.Timedelta(seconds=1)).to_numpy(float, na_value=np.nan)

    moved = _grid_unique(seconds(values), seconds(real.dropna()), group, step=resolution)
    stamps = EPOCH + pd.to_timedelta(pd.Series(moved), unit="s")
    if text:
        return _like(stamps.dt.strftime(fmt) if fmt else stamps.astype(str), real)
    return stamps.dt.tz_convert(real.dt.tz).astype(real.dtype) if real.dt.tz else stamps.dt.tz_localize(None)


def _grid_unique(values: np.ndarray, real: np.ndarray, group: pd.Series, *, step: float | None = None) -> np.ndarray:
    """Values snapped to the real values' grid, then made unique within each group by the fewest, nearest moves.

    The grid is the real values' smallest gap from their smallest value (`step` when given). In each group, values in
    order take grid points `k_i' = i + cummax(k_i - i)` (never below their own), then are pulled back under the
    group's top real grid point where room allows: distinct, in the same order, each moved as little as that allows.
    """
    out = values.copy()
    if real.size == 0 or np.isnan(values).all():
        return out
    gaps = np.diff(np.unique(real))
    step = float(step or (gaps[gaps > 0].min() if (gaps > 0).any() else 1.0))
    lo, hi = real.min(), real.max()
    top = round((hi - lo) / step)
    present = ~np.isnan(values)
    k = np.round((values - lo) / step)
    for members in pd.Series(np.arange(values.size))[present].groupby(group[present].to_numpy()).indices.values():
        rows = np.flatnonzero(present)[members]
        order = rows[np.argsort(k[rows], kind="stable")]
        n = order.size
        i = np.arange(n)
        up = i + np.maximum.accumulate(np.maximum(k[order], 0) - i)
        if top + 1 >= n:
            up = np.minimum(up, top - (n - 1 - i))
        k[order] = up
    out[present] = lo + k[present] * step
    return out
