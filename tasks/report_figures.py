"""The report's figures: per-column distributions, association heatmaps and the DCR histogram, as PNG data URIs.

Each figure is drawn on its own matplotlib `Figure` (Agg canvas, no pyplot state), so reports render safely in
worker threads; `tasks.report` lays them out in the HTML.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from synthgate.schemas.table import ColumnSchema
from synthgate.tasks.distance import NUMERIC_KINDS, category_labels, numeric_values
from synthgate.tasks.report_html import png_uri

REAL_COLOR = "#2b6cb0"
SYN_COLOR = "#dd6b20"
# Distribution plots use at most this many rows per side (enough for a smooth histogram, cheap to draw).
PLOT_ROWS = 50_000
# Columns shown in the distributions section and the heatmaps; wider tables list the rest by name.
MAX_PLOT_COLUMNS = 40
MAX_BAR_LEVELS = 20


def _png(fig: Figure) -> str:
    """Render a figure to a base64 PNG data URI (Agg canvas, no pyplot state, safe in worker threads)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return png_uri(buffer.getvalue())


def _label_inches(labels: list[str], fontsize: float, rotation: float) -> float:
    """Room the longest tick label needs across its axis: figures are laid out by hand, because matplotlib's
    automatic layouts measure every artist's extent and cost more than drawing the figure."""
    longest = max((len(label) for label in labels), default=0)
    width = longest * fontsize * 0.6 / 72  # a character is about 0.6 em wide
    return width * np.sin(np.radians(rotation)) + fontsize * 1.6 / 72


def plot_sample(frame: pd.DataFrame, n: int = PLOT_ROWS) -> pd.DataFrame:
    return frame if len(frame) <= n else frame.sample(n, random_state=0)


def distribution_figure(
    col: ColumnSchema, real: pd.Series | None, synthetic: pd.Series, score: float | None = None
) -> str:
    """One column, real vs synthetic: overlaid density histograms for numbers, side-by-side bars for categories.

    Colours are fixed (real blue, synthetic orange) and explained once above the grid, so each panel stays uncluttered;
    the title carries the column's shape score from the gates, so the worst columns stand out.
    """
    width, height = 3.6, 2.4
    fig = Figure(figsize=(width, height))
    ax = fig.subplots()
    bottom, left = 0.3, 0.15  # inches beside the axes: one line of tick labels below, none on the left
    if col.kind in NUMERIC_KINDS:
        syn = numeric_values(synthetic, col)
        rea = numeric_values(real, col) if real is not None else np.array([])
        both = np.concatenate([rea[np.isfinite(rea)], syn[np.isfinite(syn)]])
        if both.size:
            lo, hi = np.quantile(both, [0.005, 0.995])
            n_bins = int(np.clip(np.sqrt(min(rea.size or syn.size, syn.size)), 10, 40))  # coarser for small samples
            bins = np.linspace(lo, hi if hi > lo else lo + 1, n_bins + 1)
            for values, color, label in ((rea, REAL_COLOR, "real"), (syn, SYN_COLOR, "synthetic")):
                if values.size:  # no real side when the report draws the synthetic rows alone
                    finite = np.clip(values[np.isfinite(values)], lo, hi)
                    ax.hist(finite, bins, density=True, alpha=0.55, color=color, label=label)
        ax.set_yticks([])
        if col.kind.value == "datetime":
            ax.tick_params(axis="x", labelrotation=30)
            ticks = ax.get_xticks()
            ax.set_xticks(ticks, [pd.Timestamp(t, unit="s").strftime("%Y-%m-%d") for t in ticks], fontsize=7)
            bottom = _label_inches(["2000-01-01"], 7, 30) + 0.05
    else:
        syn_share = pd.Series(category_labels(synthetic)).value_counts(normalize=True)
        real_share = (
            pd.Series(category_labels(real)).value_counts(normalize=True)
            if real is not None
            else pd.Series(dtype=float)
        )
        levels = real_share.add(syn_share, fill_value=0).sort_values(ascending=False).index[:MAX_BAR_LEVELS]
        x = np.arange(len(levels))
        ax.bar(x - 0.2, real_share.reindex(levels, fill_value=0).to_numpy(), 0.4, color=REAL_COLOR, label="real")
        ax.bar(x + 0.2, syn_share.reindex(levels, fill_value=0).to_numpy(), 0.4, color=SYN_COLOR, label="synthetic")
        labels = [str(v)[:12] for v in levels]
        rotation = 45 if len(levels) > 3 else 0
        ax.set_xticks(x, labels, rotation=rotation, ha="right" if rotation else "center", fontsize=7)
        bottom = _label_inches(labels, 7, rotation) + 0.05
        left = 0.35 + (_label_inches(labels[:1], 7, 90) - 0.2) * 0.7 if rotation else 0.35  # shares, first label
    shape = "" if score is None else f" - shape {score:.2f}"
    ax.set_title(
        f"{col.name} ({col.kind.value}){shape}", fontsize=9, color="#c53030" if (score or 1) < 0.7 else "black"
    )
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.subplots_adjust(left=min(left / width, 0.4), right=0.97, top=1 - 0.3 / height, bottom=min(bottom / height, 0.6))
    return _png(fig)


def association_matrix(frame: pd.DataFrame, columns: list) -> np.ndarray:
    """Pairwise association in [-1, 1]: Spearman correlation for numeric pairs, Cramér's V for the rest.

    Numeric columns paired with a categorical one are cut into quintiles first, so every pair gets one comparable
    number and the real and synthetic heatmaps share a scale.
    """
    k = len(columns)
    codes: dict[str, np.ndarray] = {}
    ranks: dict[str, np.ndarray] = {}
    for col in columns:
        if col.kind in NUMERIC_KINDS:
            values = numeric_values(frame[col.name], col)
            ranks[col.name] = pd.Series(values).rank().to_numpy()
            finite = values[np.isfinite(values)]
            edges = np.unique(np.quantile(finite, [0.2, 0.4, 0.6, 0.8])) if finite.size else np.array([])
            c = np.digitize(values, edges)
            c[~np.isfinite(values)] = edges.size + 1
            codes[col.name] = c
        else:
            codes[col.name] = pd.factorize(category_labels(frame[col.name]))[0]
    out = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            a, b = columns[i].name, columns[j].name
            if a in ranks and b in ranks:
                value = pd.Series(ranks[a]).corr(pd.Series(ranks[b]))
            else:
                value = _cramers_v(codes[a], codes[b])
            out[i, j] = out[j, i] = 0.0 if not np.isfinite(value) else value
    return out


def _cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Cramér's V of two coded columns (chi-squared based association, 0 = independent, 1 = determined)."""
    _, a_codes = np.unique(a, return_inverse=True)
    _, b_codes = np.unique(b, return_inverse=True)
    n_b = int(b_codes.max(initial=-1)) + 1
    table = np.bincount(a_codes * n_b + b_codes, minlength=(int(a_codes.max(initial=-1)) + 1) * n_b).astype(float)
    table = table.reshape(-1, n_b) if n_b else table.reshape(0, 0)
    if min(table.shape) < 2:
        return 0.0
    n = table.sum()
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    return float(np.sqrt(chi2 / (n * (min(table.shape) - 1))))


def heatmap_figure(real: pd.DataFrame | None, synthetic: pd.DataFrame, columns: list) -> str:
    """Three heatmaps side by side: real, synthetic, and their absolute difference."""
    names = [c.name for c in columns]
    syn = association_matrix(synthetic, columns)
    panels = [("synthetic", syn, "RdBu_r", -1)]
    if real is not None:
        rea = association_matrix(real, columns)
        panels = [
            ("real", rea, "RdBu_r", -1),
            ("synthetic", syn, "RdBu_r", -1),
            ("|real - synthetic|", np.abs(rea - syn), "Reds", 0),
        ]
    labels = [n[:16] for n in names]
    margin = _label_inches(labels, 7, 90)  # room for the rotated column names, below and on the left
    size = min(4.0, 1.6 + 0.2 * len(names))  # one square panel, inches
    bar, gap, top = 0.12, 0.35, 0.35  # colour bar width, space after a panel (or its bar's labels), title room
    # One colour bar per scale: after the synthetic panel (shared with the real one) and after the difference.
    with_bar = [i == len(panels) - 1 or (i == 1 and len(panels) == 3) for i in range(len(panels))]
    width = margin + 0.1 + sum(size + gap + (bar + 0.45 if b else 0) for b in with_bar)
    height = margin + 0.1 + size + top
    fig = Figure(figsize=(width, height))
    x = margin + 0.1
    for i, (title, matrix, cmap, vmin) in enumerate(panels):
        ax = fig.add_axes((x / width, (margin + 0.1) / height, size / width, size / height))
        image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=1)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(names)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), labels if i == 0 else [], fontsize=7)
        x += size + 0.1
        if with_bar[i]:
            cax = fig.add_axes((x / width, (margin + 0.1 + size * 0.1) / height, bar / width, size * 0.8 / height))
            fig.colorbar(image, cax=cax).ax.tick_params(labelsize=7)
            x += bar + 0.45
        x += gap - 0.1
    return _png(fig)


def dcr_figure(histogram: Mapping[str, list[float]]) -> str:
    """The DCR histogram: distance to the closest training row, for synthetic rows and for holdout rows."""
    edges = np.asarray(histogram["edges"])
    syn = np.asarray(histogram["synthetic_to_train"], dtype=float)
    hold = np.asarray(histogram["holdout_to_train"], dtype=float)
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig = Figure(figsize=(6.5, 2.8))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.1, right=0.98, top=0.95, bottom=0.18)
    ax.bar(centers, syn / max(syn.sum(), 1), width, alpha=0.55, color=SYN_COLOR, label="synthetic -> train")
    ax.bar(centers, hold / max(hold.sum(), 1), width, alpha=0.55, color=REAL_COLOR, label="holdout -> train")
    ax.set_xlabel("Gower distance to the closest training row")
    ax.set_ylabel("share of rows")
    ax.legend(fontsize=8, frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _png(fig)
