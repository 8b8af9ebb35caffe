"""Reversible transforms that make every decoded row keep the schema's rules between columns.

Applied by `TableEncoder` before encoding and undone after decoding, so every model family (and `auto`, the model
cache and streamed output, which all go through the encoder) gets rows that hold the rules by construction:

- `high >= low`: the model sees `low` and the gap `log1p((high - low) / scale)` in place of `high`; the encoder clips
  the gap to its fitted bounds (never below 0), and decoding rebuilds `high = low + gap`. Each column takes its
  tightest lower bound as its parent (the rules form a forest: `a >= b >= c` models `c` and two gaps); rows where the
  parent is null keep the column's own value (stored against a fixed base, the parent's median). Rules left over
  (a second lower bound, or rounding to the column's decimals or date resolution) are repaired by raising the column
  to the bound, rounded up; what clipping to a bound still breaks is dropped by `tasks.sample`, which draws again.
- fixed combinations: the columns a rule links become one joint categorical over the combinations seen in training
  (a city and its state are one level), so only observed combinations can be decoded.

Pure pandas and numpy: the transform's state is JSON and is saved inside the encoder's file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synthgate.schemas.constraints import FixedCombination, Inequality, numeric_values
from synthgate.schemas.date_parts import DatePart, as_datetimes, part_values
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.table import ColumnKind, ColumnSchema, TableSchema

logger = logging.getLogger(__name__)

_ORDERED = (ColumnKind.CONTINUOUS, ColumnKind.INTEGER, ColumnKind.DATETIME)
_CATEGORY = (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)
# A joint categorical with more levels than this share of the training rows would be mostly one-row levels.
MAX_JOINT_LEVEL_SHARE = 0.5


@dataclass
class GapState:
    """`column` is modelled as `log1p((column - base) / scale)` (or the plain difference), base = parent or `fill`."""

    column: str
    parent: str
    scale: float = 1.0
    log: bool = True
    fill: float = 0.0
    lower: list[str] = field(default_factory=list)  # every rule `column >= x`, parent included (repaired on decode)
    strict: list[str] = field(default_factory=list)  # the strict ones among them


@dataclass
class JointState:
    """`columns` are modelled as one categorical (named after the first) over `levels`, the observed combinations."""

    columns: list[str]
    levels: list[list[Any]]


class ConstraintTransform:
    """Turn the modelled frame into one where the schema's rules cannot be broken, and back.

    Args:
        schema: the table's schema; its `constraints` between modelled columns are the ones held.

    Attributes:
        gaps_: one `GapState` per column rebuilt from a lower bound, in the order they are rebuilt.
        joints_: one `JointState` per group of columns linked by fixed combinations.
        parts_: the date-part rules held: their columns are not modelled but recomputed from their datetime.
        schema_: the schema of the transformed frame, which the encoder encodes.
    """

    def __init__(self, schema: TableSchema):
        self.schema = schema
        self.gaps_: list[GapState] = []
        self.joints_: list[JointState] = []
        self.parts_: list[DatePart] = []
        self.partial_: list[str] = []
        self.schema_: TableSchema = schema

    # ---------------------------------------------------------------------------------------------------- fit
    def fit(self, frame: pd.DataFrame) -> ConstraintTransform:
        cols = {c.name: c for c in self.schema.modelled if c.name in frame.columns}
        self.parts_ = [
            r
            for r in self.schema.constraints
            if isinstance(r, DatePart) and r.column in cols and cols.get(r.source) and cols[r.source].kind == "datetime"
        ]
        self.partial_ = sorted(  # set on rows without their datetime too: modelled there, overwritten elsewhere
            r.column
            for r in self.parts_
            if (frame[r.column].notna() & as_datetimes(frame[r.source], cols[r.source].format).isna()).any()
        )
        derived = {r.column for r in self.parts_}
        cols = {k: v for k, v in cols.items() if k not in derived}  # recomputed, so no other rule reshapes them
        inequalities = [
            r
            for r in self.schema.constraints
            if isinstance(r, Inequality) and _comparable(cols.get(r.high), cols.get(r.low))
        ]
        combos = [
            r
            for r in self.schema.constraints
            if isinstance(r, FixedCombination) and all(c in cols and cols[c].kind in _CATEGORY for c in r.columns)
        ]
        self.gaps_ = self._fit_gaps(frame, inequalities, cols)
        self.joints_ = self._fit_joints(frame, combos)
        self.schema_ = self._derived_schema(frame)
        return self

    def _fit_gaps(self, frame: pd.DataFrame, rules: list[Inequality], cols: dict[str, ColumnSchema]) -> list[GapState]:
        lower: dict[str, list[Inequality]] = {}
        for rule in rules:
            lower.setdefault(rule.high, []).append(rule)
        edges = {(r.high, r.low) for r in rules}
        order = _topological(lower)
        states = []
        for name in order:
            if name not in lower:
                continue
            bounds = [r.low for r in lower[name]]
            # The tightest bound: one that no other bound of this column lies above.
            tight = [b for b in bounds if not any((o, b) in edges for o in bounds if o != b)]
            parent = tight[0]
            x = numeric_values(frame[name], cols[name].kind.value, cols[name].format)
            p = numeric_values(frame[parent], cols[parent].kind.value, cols[parent].format)
            fill = float(np.nanmedian(p)) if np.isfinite(p).any() else 0.0
            gap = x - np.where(np.isfinite(p), p, fill)
            finite = gap[np.isfinite(gap)]
            positive = finite[finite > 0]
            scale = float(np.median(positive)) if positive.size else 1.0
            states.append(
                GapState(
                    column=name,
                    parent=parent,
                    scale=scale if scale > 0 else 1.0,
                    log=bool(finite.size and finite.min() >= 0),
                    fill=fill,
                    lower=bounds,
                    strict=[r.low for r in lower[name] if r.strict],
                )
            )
        return states

    def _fit_joints(self, frame: pd.DataFrame, rules: list[FixedCombination]) -> list[JointState]:
        groups: list[list[str]] = []
        for rule in rules:  # union of the columns that rules link, in table order
            touching = [g for g in groups if set(g) & set(rule.columns)]
            merged = {c for g in touching for c in g} | set(rule.columns)
            groups = [g for g in groups if g not in touching] + [[n for n in self.schema.names if n in merged]]
        states = []
        for columns in groups:
            tuples = frame[columns].astype(object).where(frame[columns].notna(), None)
            levels = [list(t) for t in dict.fromkeys(map(tuple, tuples.itertuples(index=False, name=None)))]
            if len(levels) > max(50, MAX_JOINT_LEVEL_SHARE * len(frame)):
                logger.warning(
                    "constraints: %s have %d combinations in %d rows, too many to model jointly; their rules are held "
                    "by redrawing rows that break them",
                    columns,
                    len(levels),
                    len(frame),
                )
                continue
            states.append(JointState(columns=columns, levels=[[_plain(v) for v in lv] for lv in levels]))
        return states

    def _derived_schema(self, frame: pd.DataFrame) -> TableSchema:
        by_name = {c.name: c for c in self.schema.columns}
        dropped = {c for j in self.joints_ for c in j.columns[1:]} | (self.derived - set(self.partial_))
        replaced: dict[str, ColumnSchema] = {}
        if self.gaps_:
            derived = self._gap_frame(frame)
            for state in self.gaps_:
                values = derived[state.column].to_numpy(dtype=np.float64)
                finite = values[np.isfinite(values)]
                replaced[state.column] = ColumnSchema(
                    name=state.column,
                    kind=ColumnKind.CONTINUOUS,
                    dtype="float64",
                    nullable=by_name[state.column].nullable,
                    minimum=float(finite.min()) if finite.size else None,
                    maximum=float(finite.max()) if finite.size else None,
                )
        for joint in self.joints_:
            replaced[joint.columns[0]] = ColumnSchema(
                name=joint.columns[0],
                kind=ColumnKind.CATEGORICAL,
                dtype="object",
                categories=[_label(lv) for lv in joint.levels],
            )
        columns = [replaced.get(c.name, c) for c in self.schema.columns if c.name not in dropped]
        return TableSchema(name=self.schema.name, columns=columns, n_rows=self.schema.n_rows)

    # ------------------------------------------------------------------------------------------- forward/back
    @property
    def reshaped(self) -> set[str]:
        """Columns the model does not see as themselves (conditions on them are met by filtering only)."""
        return {g.column for g in self.gaps_} | {c for j in self.joints_ for c in j.columns} | self.derived

    @property
    def derived(self) -> set[str]:
        """Date parts: not modelled, recomputed from their datetime."""
        return {r.column for r in self.parts_}

    def forward(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame the encoder sees: gaps in place of bounded columns, joint levels in place of linked columns."""
        if not (self.gaps_ or self.joints_ or self.parts_):
            return frame
        out = self._gap_frame(frame) if self.gaps_ else frame.copy()
        for joint in self.joints_:
            tuples = frame[joint.columns].astype(object).where(frame[joint.columns].notna(), None)
            out[joint.columns[0]] = [_label([_plain(v) for v in t]) for t in tuples.itertuples(index=False, name=None)]
            unknown = set(out[joint.columns[0]]) - {_label(lv) for lv in joint.levels}
            if unknown:
                raise InvalidInputError(
                    f"columns {joint.columns}: combination(s) {sorted(unknown)[:5]} were not seen when the encoder was "
                    "fitted; validate the input against the schema first"
                )
            out = out.drop(columns=joint.columns[1:])
        return out[[c.name for c in self.schema_.modelled if c.name in out.columns]]

    def _gap_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        kinds = {c.name: (c.kind.value, c.format) for c in self.schema.columns}
        for state in self.gaps_:
            x = numeric_values(frame[state.column], *kinds[state.column])
            p = numeric_values(frame[state.parent], *kinds[state.parent])
            gap = (x - np.where(np.isfinite(p), p, state.fill)) / state.scale
            out[state.column] = np.log1p(np.maximum(gap, 0.0)) if state.log else gap
        return out

    def inverse(self, decoded: pd.DataFrame) -> pd.DataFrame:
        """Rebuild the modelled columns from the decoded transformed frame, in the schema's order and dtypes."""
        if not (self.gaps_ or self.joints_ or self.parts_):
            return decoded
        from synthgate.models.encoders.table import _restore_categorical, _restore_numeric

        by_name = {c.name: c for c in self.schema.columns}
        out = decoded.copy()
        for joint in self.joints_:
            labels = out[joint.columns[0]].to_numpy(dtype=object)
            parts = np.array([json.loads(lb) for lb in labels], dtype=object).reshape(len(labels), len(joint.columns))
            for k, name in enumerate(joint.columns):
                out[name] = _restore_categorical(parts[:, k].copy(), by_name[name]).set_axis(out.index)
        for state in self.gaps_:  # parents first (topological order), so every bound is final when it is used
            col = by_name[state.column]
            derived = out[state.column].to_numpy(dtype=np.float64)
            missing = ~np.isfinite(derived)
            gap = np.expm1(derived) if state.log else derived
            p = numeric_values(out[state.parent], by_name[state.parent].kind.value, by_name[state.parent].format)
            values = np.where(np.isfinite(p), p, state.fill) + gap * state.scale
            restored = _restore_numeric(np.where(missing, 0.0, values), missing, col)
            out[state.column] = self._repair(restored, state, out, by_name).set_axis(out.index)
        for rule in self.parts_:  # after the gaps: the datetime is final
            part = _restore_part(out, rule, by_name).set_axis(out.index)
            if rule.column in self.partial_:  # the model's value stays where the datetime is missing
                part = part.where(out[rule.source].notna(), out[rule.column])
            out[rule.column] = part
        return out[[c.name for c in self.schema.modelled if c.name in out.columns]]

    def _repair(
        self, restored: pd.Series, state: GapState, out: pd.DataFrame, by_name: dict[str, ColumnSchema]
    ) -> pd.Series:
        """Raise values that rounding or a second bound left below a lower bound, to the bound rounded up."""
        from synthgate.models.encoders.table import _restore_numeric

        col = by_name[state.column]
        x = numeric_values(restored, col.kind.value, col.format)
        target = x.copy()
        for low in state.lower:
            b = numeric_values(out[low], by_name[low].kind.value, by_name[low].format)
            both = np.isfinite(x) & np.isfinite(b)
            strict = low in state.strict
            bad = both & ((target <= b) if strict else (target < b))
            if bad.any():
                target[bad] = _ceil_to_grid(b[bad], col, strict=strict)
        if np.array_equal(target, x, equal_nan=True):
            return restored
        missing = ~np.isfinite(target)
        return _restore_numeric(np.where(missing, 0.0, target), missing, col)

    # ------------------------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "gaps": [asdict(g) for g in self.gaps_],
            "joints": [asdict(j) for j in self.joints_],
            "parts": [r.model_dump(mode="json") for r in self.parts_],
            "partial": self.partial_,
            "schema": self.schema_.model_dump(mode="json"),  # the gaps' bounds were fitted on the training rows
        }

    @classmethod
    def from_dict(cls, schema: TableSchema, payload: dict[str, Any]) -> ConstraintTransform:
        transform = cls(schema)
        transform.gaps_ = [GapState(**g) for g in payload.get("gaps", [])]
        transform.joints_ = [JointState(**j) for j in payload.get("joints", [])]
        transform.parts_ = [DatePart.model_validate(r) for r in payload.get("parts", [])]
        transform.partial_ = list(payload.get("partial", []))
        transform.schema_ = TableSchema.model_validate(payload["schema"]) if "schema" in payload else schema
        return transform


# --------------------------------------------------------------------------------------------------- helpers
def _restore_part(out: pd.DataFrame, rule: DatePart, by_name: dict[str, ColumnSchema]) -> pd.Series:
    """The date part of the decoded datetime in the column's dtype; missing where the datetime is."""
    from synthgate.models.encoders.table import _restore_categorical, _restore_numeric

    col = by_name[rule.column]
    values = part_values(as_datetimes(out[rule.source], by_name[rule.source].format), rule.part, rule.timezone)
    missing = ~np.isfinite(values)
    if col.kind in _CATEGORY:
        levels = {float(v): v for v in col.categories or [] if not isinstance(v, bool)}  # the category's own values
        picked = np.array([None if m else levels.get(v, int(v)) for v, m in zip(values, missing, strict=True)])
        return _restore_categorical(picked, col)
    return _restore_numeric(np.where(missing, 0.0, values), missing, col.model_copy(update={"nullable": True}))


def _comparable(a: ColumnSchema | None, b: ColumnSchema | None) -> bool:
    if a is None or b is None or a.kind not in _ORDERED or b.kind not in _ORDERED:
        return False
    return (a.kind == ColumnKind.DATETIME) == (b.kind == ColumnKind.DATETIME)


def _topological(lower: dict[str, list[Inequality]]) -> list[str]:
    """Columns with lower bounds, each after all of its bounds (Kahn's algorithm); a cycle is an input error."""
    nodes = set(lower) | {r.low for rules in lower.values() for r in rules}
    pending = {n: {r.low for r in lower.get(n, [])} for n in nodes}
    order: list[str] = []
    while pending:
        ready = sorted(n for n, deps in pending.items() if not deps)
        if not ready:
            raise InvalidInputError(
                f"the schema's inequality rules between {sorted(pending)} form a cycle; delete one of them"
            )
        for n in ready:
            order.append(n)
            del pending[n]
        for deps in pending.values():
            deps.difference_update(ready)
    return order


def _ceil_to_grid(values: np.ndarray, col: ColumnSchema, *, strict: bool) -> np.ndarray:
    """The smallest value on the column's grid (decimals, integer, date resolution) at or (strict) above `values`."""
    if col.kind == ColumnKind.DATETIME:
        step = col.resolution_seconds or 1e-6
    elif col.kind == ColumnKind.INTEGER or col.dtype.lower().startswith(("int", "uint")):
        step = 1.0
    elif col.decimals is not None:
        step = 10.0**-col.decimals
    else:
        return np.nextafter(values, np.inf) if strict else values
    grid = np.ceil(np.round(values / step, 9)) * step
    if strict:
        grid = np.where(grid <= values, grid + step, grid)
    return grid


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _label(level: list[Any]) -> str:
    return json.dumps(level)
