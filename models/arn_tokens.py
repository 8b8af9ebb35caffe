"""Columns as tokens for the autoregressive family: one discrete token per column and row, and back.

The arn models every column as a categorical conditional, so each column of the encoded table becomes one token:
    category span: the level (missing is a level already);
    number (value span, optional missing flag): missing is token 0; every exact value that holds at least
        `spike_share` of the rows (and `min_support` rows) is a token of its own (heaped values such as multiples of
        500, integers stored as floats, zero inflation); the remaining values fall in equal-count quantile bins of at
        least `min_support` rows each, decoded uniformly within the bin.
Spikes decode to the exact encoded value, so heaped values come back exactly (after the encoder's rounding to the
column's decimals), and bins never reach outside the observed minimum and maximum, so neither does any sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from synthgate.models.encoders.table import Span
from synthgate.schemas.errors import InvalidInputError


@dataclass
class ColumnTokens:
    """How one column maps to tokens.

    Attributes:
        column: the column name.
        kind: "category" (a one-hot span) or "number" (a value span, with a missing flag when `missing_at` is set).
        start: first encoded feature of the column (the one-hot, or the value).
        width: number of encoded features of the one-hot (1 for numbers).
        missing_at: encoded index of the missing flag, or -1.
        spikes: exact encoded values that are tokens of their own.
        edges: bin edges in encoded units, (n_bins + 1,), from the observed minimum to the observed maximum.
    """

    column: str
    kind: str
    start: int
    width: int = 1
    missing_at: int = -1
    spikes: list[float] | None = None
    edges: list[float] | None = None

    @property
    def n_tokens(self) -> int:
        if self.kind == "category":
            return self.width
        return 1 + len(self.spikes or []) + max(len(self.edges or []) - 1, 1)

    @property
    def first_bin(self) -> int:
        return 1 + len(self.spikes or [])


def columns_from_spans(spans: list[Span]) -> list[ColumnTokens]:
    """Group the encoder's spans by column; a mode one-hot (mode-specific normalisation) becomes a category of its own,
    placed before the value it selects, so the value is drawn given its mode."""
    out: dict[str, ColumnTokens] = {}
    for span in spans:
        if span.role == "category":
            out[span.column] = ColumnTokens(span.column, "category", span.start, span.width)
        elif span.role == "value":
            out[span.column] = ColumnTokens(span.column, "number", span.start)
        elif span.role == "missing":
            out[span.column].missing_at = span.start
        else:  # "mode": re-insert so that the mode comes first
            value = out.pop(span.column)
            out[f"{span.column}:mode"] = ColumnTokens(f"{span.column}:mode", "category", span.start, span.width)
            out[span.column] = value
    return list(out.values())


def fit_tokens(x: np.ndarray, col: ColumnTokens, *, max_bins: int, min_support: int, spike_share: float) -> None:
    """Learn `col`'s spikes and bin edges from the encoded rows `x` (n, n_features); categories need nothing."""
    if col.kind == "category":
        return
    values = x[:, col.start]
    if col.missing_at >= 0:
        values = values[x[:, col.missing_at] < 0.5]
    if values.size == 0:
        col.spikes, col.edges = [], [0.0, 0.0]
        return
    uniq, counts = np.unique(values, return_counts=True)
    spikes = uniq[counts >= max(min_support, spike_share * values.size)]
    rest = values[~np.isin(values, spikes)]
    if rest.size == 0:
        col.spikes, col.edges = spikes.tolist(), [float(values.min()), float(values.max())]
        return
    n_bins = int(np.clip(rest.size // max(min_support, 1), 1, max_bins))
    edges = np.unique(np.quantile(rest, np.linspace(0, 1, n_bins + 1)))
    if edges.size < 2:
        edges = np.array([rest.min(), rest.max()])
    col.spikes, col.edges = spikes.tolist(), edges.astype(np.float64).tolist()


def to_tokens(x: np.ndarray, columns: list[ColumnTokens]) -> np.ndarray:
    """(n, n_features) encoded rows -> (n, n_columns) int64 tokens."""
    out = np.zeros((x.shape[0], len(columns)), dtype=np.int64)
    for j, col in enumerate(columns):
        if col.kind == "category":
            out[:, j] = x[:, col.start : col.start + col.width].argmax(1)
            continue
        v = x[:, col.start].astype(np.float64)
        spikes = np.asarray(col.spikes, dtype=np.float64)
        edges = np.asarray(col.edges, dtype=np.float64)
        pos = np.searchsorted(spikes, v).clip(0, max(spikes.size - 1, 0))
        is_spike = spikes.size > 0
        is_spike = (spikes[pos] == v) if is_spike else np.zeros(v.size, dtype=bool)
        bins = np.searchsorted(edges[1:-1], v, side="right")  # values outside the edges land in the end bins
        tok = np.where(is_spike, 1 + pos, col.first_bin + bins)
        if col.missing_at >= 0:
            tok[x[:, col.missing_at] >= 0.5] = 0
        out[:, j] = tok
    return out


def from_tokens(tokens: Tensor, columns: list[ColumnTokens], n_features: int, generator: torch.Generator) -> Tensor:
    """(n, n_columns) tokens -> (n, n_features) encoded rows: one-hots, exact spikes, uniform draws within bins."""
    n = tokens.shape[0]
    device = tokens.device
    out = torch.zeros(n, n_features, device=device)
    rows = torch.arange(n, device=device)
    for j, col in enumerate(columns):
        tok = tokens[:, j]
        if col.kind == "category":
            out[rows, col.start + tok] = 1.0
            continue
        spikes = torch.tensor(col.spikes or [0.0], dtype=torch.float32, device=device)
        edges = torch.tensor(col.edges, dtype=torch.float32, device=device)
        b = (tok - col.first_bin).clamp(0, edges.numel() - 2)
        u = torch.rand(n, generator=generator, device=device)
        within = edges[b] + u * (edges[b + 1] - edges[b])
        spike = spikes[(tok - 1).clamp(0, spikes.numel() - 1)]
        is_spike = (tok >= 1) & (tok < col.first_bin)
        value = torch.where(is_spike, spike, within)
        if col.missing_at >= 0:
            missing = tok == 0
            out[:, col.missing_at] = missing.float()
            value = torch.where(missing, torch.zeros_like(value), value)
        out[:, col.start] = value
    return out


def tokenise_table(
    x: np.ndarray,
    spans: list[Span] | None,
    *,
    max_bins: int,
    min_support: int,
    spike_share: float,
    order: str = "table",
) -> tuple[list[ColumnTokens], list[int], np.ndarray]:
    """Fit every column's tokens on encoded rows `x` and return them with the column order and the token rows.

    Returns:
        columns: each column's `ColumnTokens`, in table order.
        order: the order the conditionals follow (indices into `columns`): the table's, or by token count ("levels").
        tokens: (n, c) int64 token rows in that order.
    """
    spans = spans or [Span(f"x{i}", i, 1, "linear", "value") for i in range(x.shape[1])]
    columns = columns_from_spans(spans)
    for col in columns:
        fit_tokens(x, col, max_bins=max_bins, min_support=min_support, spike_share=spike_share)
    ranked = list(range(len(columns)))
    if order == "levels":
        ranked = sorted(ranked, key=lambda j: (columns[j].n_tokens, j))
    return columns, ranked, to_tokens(x, columns)[:, ranked]


def forced_tokens(
    conditions: Tensor | np.ndarray | None, n: int, n_features: int, columns: list[ColumnTokens], order: list[int]
) -> np.ndarray | None:
    """Conditions ((n_features,) or (n, n_features) encoded values, NaN = free) as token rows in model order, with -1
    where a column is free; None without conditions. A column is forced when its value (or its one-hot) is given."""
    if conditions is None:
        return None
    cond = torch.as_tensor(conditions, dtype=torch.float32).cpu()
    if cond.ndim == 1:
        cond = cond[None].expand(n, -1)
    if cond.shape != (n, n_features):
        raise InvalidInputError(
            f"conditions must have shape ({n_features},) or ({n}, {n_features}), got {tuple(cond.shape)}"
        )
    free = torch.isnan(cond).numpy()
    tokens = to_tokens(np.nan_to_num(cond.numpy()), columns)
    for j, col in enumerate(columns):
        given = ~free[:, col.start] if col.kind == "number" else ~free[:, col.start : col.start + col.width].all(1)
        tokens[~given, j] = -1
    return tokens[:, order]
