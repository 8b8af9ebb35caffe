"""The drift report of `synthgate score`: the verdict, the score histograms against the holdout's, and the columns
that moved, as one self-contained HTML file built from the run report's pieces (`tasks.report_html`)."""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from synthgate.schemas.scoring import ScoreSummary
from synthgate.schemas.table import TableSchema
from synthgate.tasks.report_figures import REAL_COLOR, SYN_COLOR, distribution_figure, plot_sample
from synthgate.tasks.report_html import fmt, kv_table, page, png_uri, write_html

MAX_MOVED_PLOTS = 12


def score_histogram(batch: np.ndarray, holdout: np.ndarray, threshold: float) -> str:
    """Density histograms of batch and holdout scores on shared bins, with the threshold as a line."""
    fig = Figure(figsize=(7.5, 3.0), layout="constrained")
    ax = fig.subplots()
    both = np.concatenate([batch, holdout])
    both = both[np.isfinite(both)]
    lo, hi = np.quantile(both, [0.0, 0.99]) if both.size else (0.0, 1.0)
    hi = max(hi, threshold) * 1.05 if hi > 0 else hi + 1
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 41)
    ax.hist(np.clip(holdout, lo, hi), bins, density=True, alpha=0.55, color=REAL_COLOR, label="holdout")
    ax.hist(np.clip(batch, lo, hi), bins, density=True, alpha=0.55, color=SYN_COLOR, label="batch")
    ax.axvline(threshold, color="#c53030", linestyle="--", label="threshold")
    ax.set_xlabel("anomaly score (higher: less plausible; the top 1% is drawn at the right edge)")
    ax.set_yticks([])
    ax.legend(frameon=False, fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return png_uri(buffer.getvalue())


def _banner(summary: ScoreSummary) -> str:
    if not summary.drifted:
        return (
            '<div class="banner pass"><b>NO DRIFT</b><p>The batch scores and every column are consistent with the '
            f"rows the model learned from (family-wise level {summary.alpha}).</p></div>"
        )
    reasons = []
    if summary.score_drift.drifted:
        reasons.append(f"<li>anomaly scores moved (KS p = {summary.score_drift.p_value:.2g})</li>")
    moved = summary.moved_columns
    if moved:
        reasons.append(f"<li>{len(moved)} column(s) moved: {html.escape(', '.join(moved))}</li>")
    return f'<div class="banner fail"><b>DRIFT</b><ul>{"".join(reasons)}</ul></div>'


def _column_table(summary: ScoreSummary) -> str:
    rows = "".join(
        f'<tr class="{"failrow" if c.moved else ""}"><td>{html.escape(c.column)}</td><td class="num">{fmt(c.shape)}'
        f'</td><td>{c.test}</td><td class="num">{c.p_value:.3g}</td><td>'
        f"{'<span class=bad>moved</span>' if c.moved else '<span class=ok>steady</span>'}</td></tr>"
        for c in summary.columns
    )
    return f"<table><tr><th>column</th><th>shape</th><th>test</th><th>p-value</th><th></th></tr>{rows}</table>"


def render_score_report(
    summary: ScoreSummary,
    *,
    batch_scores: np.ndarray,
    holdout_scores: np.ndarray,
    batch: pd.DataFrame,
    reference: pd.DataFrame,
    schema: TableSchema,
) -> str:
    """The report's HTML: verdict, facts, score histograms, column table and the moved columns' distributions."""
    s, t = summary, summary.threshold
    facts = {
        "model": f"{s.model} ({s.model_source})",
        "batch": s.batch,
        "rows scored": s.n_rows,
        "anomalies": f"{s.n_anomalies} ({s.n_anomalies / max(s.n_rows, 1):.1%})",
        "threshold": f"{t.value:.4g}: at most {t.fpr_bound:.2%} of unseen rows above it (asked {t.fpr:.2%})",
        "calibrated on": f"{t.n_holdout} rows from {s.holdout_source}",
        "score test": f"KS p = {s.score_drift.p_value:.3g}, KS = {s.score_drift.ks_statistic:.3f}, "
        f"P(batch > holdout) = {s.score_drift.auc:.3f}",
        "columns compared with": s.column_reference,
    }
    cols = {c.name: c for c in schema.modelled}
    moved = [c for c in s.columns if c.moved][:MAX_MOVED_PLOTS]
    panels = "".join(
        f'<img src="{distribution_figure(cols[c.column], plot_sample(reference)[c.column], plot_sample(batch)[c.column], c.shape)}">'
        for c in moved
        if c.column in cols
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in s.notes)
    body = (
        _banner(s)
        + kv_table(facts)
        + "<h2>Anomaly scores</h2>"
        + f'<div class="wide"><img src="{score_histogram(batch_scores, holdout_scores, t.value)}"></div>'
        + "<h2>Columns</h2>"
        + _column_table(s)
        + (
            '<h2>Columns that moved</h2><p class="muted"><span class="swatch" style="background:'
            f'{REAL_COLOR}"></span>reference rows <span class="swatch" style="background:{SYN_COLOR}"></span>batch</p>'
            f'<div class="grid">{panels}</div>'
            if panels
            else ""
        )
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
    )
    return page(f"synthgate score: {s.batch}", body)


def write_score_report(path: str | Path, text: str) -> Path:
    """Write the report atomically (`tasks.report_html.write_html`)."""
    return write_html(path, text)
