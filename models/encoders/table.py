"""`TableEncoder`: a mixed-type table to a float tensor and back, with dtypes restored exactly.

One small transform per column kind, each declaring the `Span`s it writes (start, width, activation), as RDT's
`output_properties` do, so that neural models can put the right output head on each span (softmax for categories,
sigmoid for missing indicators, linear for values) and the GMM can simply treat the whole vector as continuous.

Layout per modelled column, in schema order:
    continuous / integer / datetime: [value] (+ [missing]) when normalised; mode-specific normalisation adds a
        one-hot of the mode: [value, mode_1..mode_k] (+ [missing]).
    categorical / boolean: one-hot [level_1..level_k] (missing becomes its own level when the column is nullable).
Identifier, free-text and PII columns are not encoded: they never reach a model (see `tasks.protect`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from synthgate.schemas.errors import InvalidInputError, NotFittedError
from synthgate.schemas.table import ColumnKind, ColumnSchema, TableSchema

Activation = Literal["linear", "softmax", "sigmoid"]
Role = Literal["value", "mode", "category", "missing"]
Normalization = Literal["standard", "mode", "mode_bic"]

MISSING = "__missing__"
SPIKE_SHARE = 0.01  # an exact value held by 1% of the rows is a spike (multiples of 500, .99 prices, zero inflation)
MIN_SPIKE_ROWS = 10
MAX_SPIKES = 30
SPIKE_WINDOW = 0.5  # in column stds: how far a sampled value may move onto a spike (docs/decisions.md#heaping-snap)


@dataclass(frozen=True)
class Span:
    """A slice of the encoded vector that belongs to one column and gets one kind of output head."""

    column: str
    start: int
    width: int
    activation: Activation
    role: Role

    @property
    def stop(self) -> int:
        return self.start + self.width


@dataclass
class ColumnState:
    """What an encoder learned about one column: enough to rebuild it from JSON."""

    name: str
    kind: str
    mean: float = 0.0
    std: float = 1.0
    has_missing: bool = False
    levels: list[Any] = field(default_factory=list)
    # Mode-specific normalisation: one Gaussian per mode (weights, means, stds), fitted by `fit_modes`.
    mode_weights: list[float] = field(default_factory=list)
    mode_means: list[float] = field(default_factory=list)
    mode_stds: list[float] = field(default_factory=list)
    # Heaped values (round numbers, zero inflation): exact values holding SPIKE_SHARE of the rows, and their shares.
    spikes: list[float] = field(default_factory=list)
    spike_shares: list[float] = field(default_factory=list)


def _numeric_values(series: pd.Series, col: ColumnSchema) -> np.ndarray:
    """Numbers as float64, with datetimes as seconds since the epoch; missing stays NaN."""
    if col.kind == ColumnKind.DATETIME:
        stamps = pd.to_datetime(series, format=col.format)  # text dates parse with the schema's format
        seconds = stamps.astype("datetime64[ns]").astype("int64").to_numpy(dtype=np.float64) / 1e9
        seconds[stamps.isna().to_numpy()] = np.nan
        return seconds
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _level_codes(series: pd.Series, levels: list[Any], column: str) -> np.ndarray:
    """Index of each value in `levels`; missing maps to the MISSING level. Unknown values are an input error."""
    known = [lv for lv in levels if lv != MISSING]
    # A hash lookup: cheaper than building a `pd.Categorical` for the same codes.
    codes = pd.Index(known).get_indexer(series).astype(np.int64)
    missing = series.isna().to_numpy()
    unknown = (codes < 0) & ~missing
    if unknown.any():
        examples = series[unknown].unique()[:5].tolist()
        raise InvalidInputError(
            f"column {column!r}: {int(unknown.sum())} value(s) outside the schema's categories, e.g. {examples}; "
            "add them to the schema's 'categories' or validate the input first"
        )
    if missing.any():
        if MISSING not in levels:
            raise InvalidInputError(f"column {column!r} has missing values but its schema says nullable: false")
        codes[missing] = levels.index(MISSING)
    return codes


class TableEncoder:
    """Encode the modelled columns of a table into a float32 tensor and decode model output back to a DataFrame.

    Args:
        schema: the table's schema; it decides each column's transform and the dtypes restored on decode.
        normalization: "standard" (z-score) or "mode" (mode-specific normalisation as in CTGAN/TVAE: a value becomes
            its offset within its most likely Gaussian mode, scaled by 4 sigma, plus a one-hot of that mode), or
            "mode_bic": the same after merging neighbouring modes while the mixture's BIC falls. The EM leaves a
            Gaussian column tiled by overlapping modes; a model that draws each column's mode on its own (the gan)
            then scatters values between them and loses correlations, while one that decodes the likeliest mode
            (the vae) reads the fine tiling as extra detail.
        max_modes: the most modes a continuous column may get under "mode" or "mode_bic" normalisation.

    Attributes:
        columns_: the fitted `ColumnState` per modelled column.
        spans_: the `Span`s of the encoded vector, in order.
        n_features_: width of the encoded vector.
    """

    def __init__(self, schema: TableSchema, *, normalization: Normalization = "standard", max_modes: int = 10):
        self.schema = schema
        self.normalization = normalization
        self.max_modes = max_modes
        self.columns_: list[ColumnState] | None = None
        self.spans_: list[Span] | None = None
        self.n_features_: int | None = None

    # ------------------------------------------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame) -> TableEncoder:
        missing = [c.name for c in self.schema.modelled if c.name not in frame.columns]
        if missing:
            raise InvalidInputError(f"columns {missing} are in the schema but not in the data")
        states: list[ColumnState] = []
        for col in self.schema.modelled:
            series = frame[col.name]
            state = ColumnState(name=col.name, kind=col.kind.value, has_missing=bool(col.nullable))
            if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                state.levels = list(col.categories or []) + ([MISSING] if col.nullable else [])
            else:
                values = _numeric_values(series, col)
                finite = values[np.isfinite(values)]
                state.mean = float(finite.mean()) if finite.size else 0.0
                std = float(finite.std()) if finite.size else 1.0
                state.std = std if std > 1e-12 else 1.0
                if col.kind != ColumnKind.DATETIME:
                    state.spikes, state.spike_shares = _find_spikes(finite, len(values))
            states.append(state)
        if self.normalization in ("mode", "mode_bic"):
            from synthgate.models.encoders.modes import fit_modes

            numeric = [s for s in states if s.kind not in ("categorical", "boolean")]
            cols = {c.name: c for c in self.schema.modelled}
            if numeric:
                matrix = np.stack([_numeric_values(frame[s.name], cols[s.name]) for s in numeric], axis=1)
                for state, (w, m, sd) in zip(
                    numeric, fit_modes(matrix, self.max_modes, merge=self.normalization == "mode_bic"), strict=True
                ):
                    state.mode_weights, state.mode_means, state.mode_stds = w, m, sd
        self._set_states(states)
        return self

    def _set_states(self, states: list[ColumnState]) -> None:
        spans: list[Span] = []
        start = 0
        for state in states:
            if state.kind in ("categorical", "boolean"):
                spans.append(Span(state.name, start, len(state.levels), "softmax", "category"))
                start += len(state.levels)
                continue
            spans.append(Span(state.name, start, 1, "linear", "value"))
            start += 1
            if state.mode_means:
                spans.append(Span(state.name, start, len(state.mode_means), "softmax", "mode"))
                start += len(state.mode_means)
            if state.has_missing:
                spans.append(Span(state.name, start, 1, "sigmoid", "missing"))
                start += 1
        self.columns_, self.spans_, self.n_features_ = states, spans, start

    # ------------------------------------------------------------------------------------------------ transform
    def transform(self, frame: pd.DataFrame, *, chunk_rows: int = 16_384) -> Tensor:
        """(n_rows, n_features_) float32 tensor of the modelled columns.

        Each column is first read whole into a 1-D array (pandas' per-call cost is paid once per column), then the
        output is filled in blocks of `chunk_rows` rows: a block's scattered one-hot writes and per-mode arrays stay
        in cache; written column by column into the whole (n, width) array, the time grew faster than the rows
        (docs/decisions.md#encoder-speed).
        """
        self._require_fitted()
        cols = {c.name: c for c in self.schema.modelled}
        n = len(frame)
        columns = []  # per column: its state and its codes (categories) or filled values and missing mask (numbers)
        spans = iter(self.spans_)
        for state in self.columns_:
            if state.kind in ("categorical", "boolean"):
                codes = _level_codes(frame[state.name], state.levels, state.name)
                columns.append((state, "codes", codes, None, [next(spans)]))
                continue
            values = _numeric_values(frame[state.name], cols[state.name])
            missing = ~np.isfinite(values)
            if missing.any() and not state.has_missing:
                raise InvalidInputError(f"column {state.name!r} has missing values but its schema says nullable: false")
            own = [next(spans) for _ in range(1 + bool(state.mode_means) + state.has_missing)]
            columns.append((state, "values", np.where(missing, state.mean, values), missing, own))
        out = np.zeros((n, self.n_features_), dtype=np.float32)
        for lo in range(0, n, chunk_rows):
            block = out[lo : lo + chunk_rows]  # a view: writes land in `out`
            rows = np.arange(block.shape[0])
            for state, kind, data, missing, own in columns:
                part = data[lo : lo + chunk_rows]
                if kind == "codes":
                    block[rows, own[0].start + part] = 1.0
                    continue
                if state.mode_means:
                    from synthgate.models.encoders.modes import encode_modes

                    scaled, mode = encode_modes(part, state.mode_weights, state.mode_means, state.mode_stds)
                    block[:, own[0].start] = scaled
                    block[rows, own[1].start + mode] = 1.0
                else:
                    block[:, own[0].start] = (part - state.mean) / state.std
                if state.has_missing:
                    block[:, own[-1].start] = missing[lo : lo + chunk_rows]
        return torch.from_numpy(out)

    def fit_transform(self, frame: pd.DataFrame) -> Tensor:
        return self.fit(frame).transform(frame)

    # ---------------------------------------------------------------------------------------- inverse transform
    def inverse_transform(self, x: Tensor | np.ndarray, *, snap: bool = False) -> pd.DataFrame:
        """Decode model output (raw values or probabilities) to a DataFrame with the schema's dtypes.

        Categories and modes are taken by argmax, missing indicators by a 0.5 threshold, numbers are clipped to the
        schema's bounds and rounded to its decimals, so every decoded row passes the schema's validation suite.
        With `snap` (for sampled rows, not for round trips), heaped values come back as exact spikes: for each spike,
        the decoded values nearest to it are set to it until it holds its training share (`_snap_to_spikes`).
        """
        self._require_fitted()
        arr = x.detach().float().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.n_features_:
            raise InvalidInputError(f"expected shape (n, {self.n_features_}) to decode, got {arr.shape}")
        cols = {c.name: c for c in self.schema.modelled}
        spans = iter(self.spans_)
        data: dict[str, pd.Series] = {}
        for state in self.columns_:
            col = cols[state.name]
            if state.kind in ("categorical", "boolean"):
                span = next(spans)
                codes = arr[:, span.start : span.stop].argmax(axis=1)
                values = np.array(state.levels, dtype=object)[codes]
                values[values == MISSING] = None
                data[state.name] = _restore_categorical(values, col)
                continue
            value_span = next(spans)
            raw = arr[:, value_span.start].astype(np.float64)
            if state.mode_means:
                from synthgate.models.encoders.modes import decode_modes

                mode_span = next(spans)
                mode = arr[:, mode_span.start : mode_span.stop].argmax(axis=1)
                values = decode_modes(raw, mode, state.mode_means, state.mode_stds)
            else:
                values = raw * state.std + state.mean
            missing = np.zeros(len(arr), dtype=bool)
            if state.has_missing:
                missing = arr[:, next(spans).start] > 0.5
            snapped = np.zeros(len(arr), dtype=bool)
            if snap and state.spikes:
                values, snapped = _snap_to_spikes(values, missing, state)
            series = _restore_numeric(values, missing, col)
            if snapped.any() and series.dtype.kind == "f":  # log(2) is a spike at full precision, not at 6 decimals
                series = series.where(~snapped, values)
            data[state.name] = series
        return pd.DataFrame(data)

    # ---------------------------------------------------------------------------------------------- persistence
    def save(self, path: Path) -> None:
        self._require_fitted()
        payload = {
            "schema": self.schema.model_dump(mode="json"),
            "normalization": self.normalization,
            "max_modes": self.max_modes,
            "columns": [asdict(s) for s in self.columns_],
        }
        Path(path).write_text(json.dumps(payload, default=_json_default))

    @classmethod
    def load(cls, path: Path) -> TableEncoder:
        payload = json.loads(Path(path).read_text())
        encoder = cls(
            TableSchema.model_validate(payload["schema"]),
            normalization=payload["normalization"],
            max_modes=payload["max_modes"],
        )
        encoder._set_states([ColumnState(**s) for s in payload["columns"]])
        return encoder

    def span_of(self, column: str, role: Role | None = None) -> Span:
        self._require_fitted()
        for span in self.spans_:
            if span.column == column and (role is None or span.role == role):
                return span
        raise InvalidInputError(f"column {column!r} is not encoded (identifier, text or PII columns are not modelled)")

    def _require_fitted(self) -> None:
        if self.columns_ is None:
            raise NotFittedError("TableEncoder is not fitted yet; call fit(frame) first")


def _find_spikes(finite: np.ndarray, n_rows: int) -> tuple[list[float], list[float]]:
    """Exact values holding at least SPIKE_SHARE of the rows (MAX_SPIKES largest), with their shares of all rows."""
    if finite.size == 0:
        return [], []
    uniq, counts = np.unique(finite, return_counts=True)
    keep = counts >= max(MIN_SPIKE_ROWS, SPIKE_SHARE * n_rows)
    uniq, counts = uniq[keep], counts[keep]
    top = np.argsort(-counts, kind="stable")[:MAX_SPIKES]
    return uniq[top].tolist(), (counts[top] / n_rows).tolist()


def _snap_to_spikes(values: np.ndarray, missing: np.ndarray, state: ColumnState) -> tuple[np.ndarray, np.ndarray]:
    """Move the decoded values nearest each spike onto it, up to the spike's training share of these rows.

    A model with a continuous output smears a heaped value (a loan of exactly 500) over its neighbours, and a
    classifier then tells the rows apart by that column alone. Taking, spike by spike (largest first), the values
    within SPIKE_WINDOW stds that are nearest to it keeps each row's rank roughly where the model put it.

    Returns:
        The values with spikes set, and the mask of rows that were set.
    """
    out = values.copy()
    free = ~missing & np.isfinite(values)
    n = values.size
    for spike, share in zip(state.spikes, state.spike_shares, strict=True):
        k = round(share * n)
        dist = np.abs(values - spike)
        candidates = np.flatnonzero(free & (dist <= SPIKE_WINDOW * state.std))
        if k == 0 or candidates.size == 0:
            continue
        chosen = candidates[np.argsort(dist[candidates], kind="stable")[:k]]
        out[chosen] = spike
        free[chosen] = False
    return out, ~free & ~missing & np.isfinite(values)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")


# -------------------------------------------------------------------------------------------- dtype restoration
def _restore_categorical(values: np.ndarray, col: ColumnSchema) -> pd.Series:
    dtype = col.dtype
    if dtype == "category":
        return pd.Series(pd.Categorical(values, categories=[c for c in col.categories or []]))
    if dtype == "bool":
        if any(v is None for v in values):  # a nullable boolean decoded to a plain bool column would lose the NAs
            return pd.Series(values, dtype="boolean")
        return pd.Series(values.astype(bool), dtype="bool")
    if dtype in ("object",):
        return pd.Series(values, dtype=object)
    if dtype.startswith(("int", "uint")) and any(v is None for v in values):
        return pd.Series(values, dtype=dtype.capitalize().replace("Uint", "UInt"))
    if dtype.startswith(("float", "Float")):
        return pd.Series([np.nan if v is None else v for v in values], dtype=dtype)
    return pd.Series(values).astype(dtype)


def _restore_numeric(values: np.ndarray, missing: np.ndarray, col: ColumnSchema) -> pd.Series:
    values = values.copy()
    lo = col.minimum if isinstance(col.minimum, int | float) else None
    hi = col.maximum if isinstance(col.maximum, int | float) else None
    if col.kind == ColumnKind.DATETIME:
        lo = pd.Timestamp(col.minimum).timestamp() if isinstance(col.minimum, str) else None
        hi = pd.Timestamp(col.maximum).timestamp() if isinstance(col.maximum, str) else None
    if lo is not None or hi is not None:
        values = np.clip(values, lo, hi)
    if not col.nullable:
        missing = np.zeros_like(missing)
    if col.kind == ColumnKind.DATETIME:
        step = col.resolution_seconds or 1e-6
        values = np.round(values / step) * step
        stamps = pd.to_datetime(np.round(values * 1e6).astype("int64"), unit="us")
        series = pd.Series(stamps)
        series[missing] = pd.NaT
        if getattr(series.dt, "tz", None) is None and "UTC" in col.dtype:
            series = series.dt.tz_localize("UTC")
        if col.format is not None:  # dates the source held as text go back as text in the source's format
            return series.dt.strftime(col.format).astype(col.dtype)
        return series.astype(col.dtype)
    if col.decimals is not None:
        values = np.round(values, col.decimals)
        if lo is not None or hi is not None:  # rounding can step past an observed bound that is not exactly decimal
            values = np.clip(values, lo, hi)
    dtype = col.dtype
    if dtype.startswith(("int", "uint")):
        if missing.any():  # cannot happen for a non-nullable column; kept safe for user-edited schemas
            return pd.Series(pd.array(np.where(missing, 0, values).astype("int64"), dtype=dtype.capitalize())).mask(
                missing
            )
        return pd.Series(np.round(values).astype(dtype))
    if dtype.startswith(("Int", "UInt")):
        arr = pd.array(np.round(values).astype("int64"), dtype=dtype)
        arr[missing] = pd.NA
        return pd.Series(arr)
    values = values.astype("float64")
    values[missing] = np.nan  # in numpy: a masked `Series.__setitem__` is slower
    return pd.Series(values).astype(dtype)
