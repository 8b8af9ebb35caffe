"""The run report: one self-contained HTML file, the same summary as Prefect artifacts, and a terminal table.

The HTML is for a data team deciding whether to trust a synthetic table, so it leads with the verdict and the failing
checks, then shows instead of tells: real-vs-synthetic distributions per column, association heatmaps, the DCR
histogram that the privacy verdict rests on, and the run facts. It embeds every image as base64 PNG and has no
external CSS, scripts or fonts, so it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from rich.table import Table

from synthgate.schemas.gates import GateResult
from synthgate.schemas.metadata import CandidateScore, OutputMetadata
from synthgate.schemas.table import TableSchema
from synthgate.tasks.report_figures import (
    MAX_PLOT_COLUMNS,
    REAL_COLOR,
    SYN_COLOR,
    dcr_figure,
    distribution_figure,
    heatmap_figure,
    plot_sample,
)
from synthgate.tasks.report_html import banner, fmt, kv_table, metric_table, page, write_html

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------- HTML
def _candidate_table(candidates: Sequence[CandidateScore]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(c.model)}</td><td class='num'>{fmt(c.detection_auc)}</td><td class='num'>{fmt(c.score)}"
        f"</td><td class='num'>{c.fit_seconds:.1f}</td><td>{html.escape(c.error or c.excluded or '')}</td></tr>"
        for c in candidates
    )
    return (
        "<table><tr><th>model</th><th>validation detection AUC</th><th>validation fidelity score</th>"
        f"<th>fit seconds</th><th>error or exclusion</th></tr>{rows}</table>"
    )


def _closest(candidates: Sequence[CandidateScore], gates: GateResult) -> str:
    """When auto's pick was refused: the candidate that came closest to passing on realism, and what held each back."""
    scored = [c for c in candidates if c.detection_auc is not None]
    if gates.passed or not scored:
        return ""
    best = min(scored, key=lambda c: (c.excluded is not None, c.detection_auc))
    why = [
        f"{c.model}: {c.error or c.excluded or f'validation detection AUC {c.detection_auc:.3f}'}" for c in candidates
    ]
    return (
        f"<p><b>No candidate passed the gates.</b> Closest on realism: <b>{html.escape(best.model)}</b>, validation "
        f"detection AUC {best.detection_auc:.3f}{'; ' + html.escape(best.excluded) if best.excluded else ''}. "
        f"Each candidate: {html.escape('; '.join(why))}.</p>"
    )


def _details(gates: GateResult, name: str) -> dict:
    try:
        return gates.metric(name).details
    except KeyError:
        return {}


def _giveaways_section(gates: GateResult) -> str:
    """'What gives the synthetic rows away': the columns and pairs the detection test's single-column classifiers
    tell real from synthetic rows by (`tasks.giveaways`), strongest first; empty when there are none."""
    found = _details(gates, "detection_auc").get("give_aways") or []
    if not found:
        return ""
    rows = "".join(
        f"<tr><td><b>{html.escape(str(f['columns']))}</b></td><td class='num'>{fmt(f['auc'])}</td>"
        f"<td>{html.escape(str(f['why']))}</td></tr>"
        for f in found
    )
    return (
        "<section id='give-aways'><h2>What gives the synthetic rows away</h2>"
        "<p class='muted'>AUC of a classifier given only these columns (0.5: no help); for a column, the value range "
        "whose share differs most.</p>"
        f"<table><tr><th>columns</th><th>AUC alone</th><th>where real and synthetic differ most</th></tr>{rows}"
        "</table></section>"
    )


RISK_METRICS = ("singling_out_risk", "linkability_risk", "inference_risk", "mia_auc")


def _budget_and_risk(gates: GateResult, epsilon: Any, notes: Sequence[str]) -> str:
    """The stated budget beside the measured risk: epsilon, how it was split, and what the attacks got."""
    rows = [
        "<tr><td>differential-privacy budget spent</td>"
        f"<td class='num'>{html.escape(str(epsilon if epsilon is not None else 'none (no differential privacy)'))}</td>"
        "<td>-</td><td>an upper bound on how much any one training row can change the output</td></tr>"
    ]
    names = {m.name for m in gates.metrics}
    for name in RISK_METRICS:
        if name not in names:
            continue
        m = gates.metric(name)
        ci = m.details.get("ci_95")
        interval = f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "-"
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td class='num'>{fmt(m.value)}</td><td>{interval}</td>"
            f"<td>{html.escape(m.description)}</td></tr>"
        )
    split = [n for n in notes if n.startswith(("privacy:", "rare categories"))]
    split_html = "".join(f"<li>{html.escape(n)}</li>" for n in split)
    return (
        "<h3>Budget beside measured risk</h3>"
        "<table><tr><th>what</th><th>value</th><th>95% interval</th><th>meaning</th></tr>"
        + "".join(rows)
        + "</table>"
        + (f"<p>How the budget was spent:</p><ul>{split_html}</ul>" if split_html else "")
        + "<p class='muted'>Risks are the attacker's success on training rows beyond its success on holdout rows it "
        "never saw (0 = no better than guessing about people outside the data); the membership-inference AUC is 0.5 "
        "when members cannot be told from non-members.</p>"
    )


def _privacy_section(gates: GateResult, epsilon: Any = None, notes: Sequence[str] = ()) -> str:
    parts = [_budget_and_risk(gates, epsilon, notes)]
    try:
        dcr = gates.metric("dcr_share_excess")
    except KeyError:
        return parts[0] + "<p class='muted'>No distance-based privacy metrics were computed.</p>"
    parts.append("<h3>Distance to the closest record</h3>")
    hist = dcr.details.get("histogram")
    if hist:
        parts.append(f"<div class='wide'><img alt='DCR histogram' src='{dcr_figure(hist)}'></div>")
    share, baseline = dcr.details.get("share"), dcr.details.get("baseline")
    if share is not None and baseline is not None:
        parts.append(
            f"<p>{share:.1%} of synthetic rows are closer to a training row than to any holdout row; rows drawn fresh "
            f"from the same population would be closer to a training row {baseline:.1%} of the time (the no-copy "
            "baseline, n_train / (n_train + n_holdout)). Copies and near-copies pile up at distance 0 in the "
            "histogram, to the left of the holdout's bars.</p>"
        )
    return "".join(parts)


def render_report(
    *,
    schema: TableSchema,
    real: pd.DataFrame | None,
    synthetic: pd.DataFrame,
    gates: GateResult,
    facts: Mapping[str, Any],
    candidates: Sequence[CandidateScore] | None = None,
    notes: Sequence[str] = (),
    pending: bool = False,
    text_examples: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> str:
    """The report as one HTML string, for `write_report`.

    Args:
        schema: the table schema (decides which columns are drawn and how).
        real: real rows to compare with (the flow passes the holdout), or None to draw the synthetic side only.
        synthetic: the synthetic rows.
        gates: every metric and verdict; the DCR histogram comes from `dcr_share_excess`'s details.
        facts: run facts shown as a table (model, seed, rows, times, data hash, epsilon, ...).
        candidates: the models `--model auto` tried, if any.
        notes: the run's notes (budget split, rare-category merges, streaming); shown with the metrics' notes, and
            the privacy ones beside the measured risk.
        pending: the output is not committed yet: NOT PUBLISHED until `report_html.mark_published` (see `banner`).
        text_examples: per synthesised text column, a few scrubbed holdout texts and synthetic texts
            (`TextOutcome.examples`); shown side by side, never stored in the metadata.
    """
    columns = [c for c in schema.modelled if c.name in synthetic.columns][:MAX_PLOT_COLUMNS]
    real_s = plot_sample(real) if real is not None else None
    syn_s = plot_sample(synthetic)
    shapes = _details(gates, "column_shapes").get("parts", {})
    dists = "".join(
        f"<img alt='{html.escape(c.name)}' "
        f"src='{distribution_figure(c, None if real_s is None else real_s[c.name], syn_s[c.name], shapes.get(c.name))}'>"
        for c in columns
    )
    hidden = len(schema.modelled) - len(columns)
    more = f"<p class='muted'>{hidden} more columns are not drawn.</p>" if hidden > 0 else ""
    heat = (
        f"<div class='wide'><img alt='association heatmaps' src='{heatmap_figure(real_s, syn_s, columns)}'></div>"
        if len(columns) >= 2
        else ""
    )
    no_real = "" if real is not None else "<p class='muted'>The real data was not available: synthetic only.</p>"
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in [*notes, *gates.notes]) or "<li>No notes.</li>"
    cand = (
        f"<h2>Candidates (--model auto)</h2>{_closest(candidates, gates)}{_candidate_table(candidates)}"
        if candidates
        else ""
    )
    body = f"""<div class="muted">generated {datetime.now(UTC).isoformat(timespec="seconds")} &middot; real = holdout rows the model never saw</div>
<section id="verdict">{banner(gates, pending=pending)}</section>
<section id="metrics"><h2>Metrics</h2>
{metric_table(gates)}</section>
{_giveaways_section(gates)}
<section id="distributions"><h2>Distributions: real vs synthetic</h2>{no_real}
<p class="muted"><span class="swatch" style="background:{REAL_COLOR}"></span>real (holdout) &nbsp;
<span class="swatch" style="background:{SYN_COLOR}"></span>synthetic &middot; titles give each column's shape score
(KS / TV complement; red below 0.7)</p><div class="grid">{dists}</div>{more}</section>
<section id="correlations"><h2>Associations</h2>
<p class="muted">Spearman correlation for numeric pairs, Cramér's V (numbers cut into quintiles) for the others;
the right panel shows where the synthetic data lost (or invented) a relation.</p>{heat}</section>
{_text_section(text_examples)}
<section id="privacy"><h2>Privacy</h2>{_privacy_section(gates, facts.get("epsilon"), notes)}</section>
<section id="facts"><h2>Run facts</h2>{kv_table(facts)}</section>
{cand}
<section id="notes"><h2>Notes</h2><ul>{notes_html}</ul></section>"""
    return page(f"synthgate report: {schema.name}", body)


def _text_section(examples: Mapping[str, Mapping[str, Sequence[str]]] | None) -> str:
    """Real and synthetic texts side by side, per synthesised text column; real ones show placeholders, not values."""
    if not examples:
        return ""
    parts = []
    for name, sides in examples.items():
        real, fake = list(sides.get("real", [])), list(sides.get("synthetic", []))
        rows = "".join(
            f"<tr><td>{html.escape(real[i] if i < len(real) else '')}</td>"
            f"<td>{html.escape(fake[i] if i < len(fake) else '')}</td></tr>"
            for i in range(max(len(real), len(fake)))
        )
        parts.append(
            f"<h3>{html.escape(name)}</h3><table><tr><th>real (holdout, personal values as placeholders)</th>"
            f"<th>synthetic</th></tr>{rows}</table>"
        )
    return (
        "<section id='text'><h2>Free text: examples</h2><p class='muted'>Random rows of each side, not pairs; "
        f"the text figures are in the metric table.</p>{''.join(parts)}</section>"
    )


def write_report(path: str | Path, text: str) -> Path:
    """Write the report HTML that `render_report` built to `path` atomically (temp file beside it, then `os.replace`).

    Its directory is created if needed. Returns the path written.
    """
    return write_html(path, text)


write_report_task = task(name="write-report", cache_policy=NO_CACHE)(write_report)


# ----------------------------------------------------------------------------------------------------- Prefect
def summary_markdown(gates: GateResult, facts: Mapping[str, Any]) -> str:
    """The verdict, failing checks, metric table and run facts as Markdown."""
    lines = [f"# {gates.summary()}", ""]
    lines += ["| metric | group | value | threshold | verdict |", "|---|---|---:|---:|---|"]
    for m in gates.metrics:
        sign = ">=" if m.direction == "min" else "<="
        threshold = "-" if m.threshold is None else f"{sign} {fmt(m.threshold)}"
        verdict = "info" if m.passed is None else ("pass" if m.passed else "**FAIL**")
        lines.append(f"| {m.name} | {m.group} | {fmt(m.value)} | {threshold} | {verdict} |")
    lines += ["", "## Run facts", ""] + [f"- **{k}**: {fmt(v)}" for k, v in facts.items()]
    if gates.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in gates.notes]
    return "\n".join(lines)


def metric_records(gates: GateResult) -> list[dict[str, Any]]:
    """One plain record per metric (Prefect table artifacts take records, not DataFrames)."""
    return [
        {
            "metric": m.name,
            "group": m.group,
            "value": m.value,
            "threshold": m.threshold,
            "direction": m.direction,
            "verdict": "info" if m.passed is None else ("pass" if m.passed else "fail"),
        }
        for m in gates.metrics
    ]


def create_run_artifacts(gates: GateResult, facts: Mapping[str, Any]) -> list[Any]:
    """Publish the summary as Prefect markdown and table artifacts (keys `synthgate-summary`, `synthgate-metrics`).

    Outside a flow or task run there is nothing to attach them to, and creating them would start a Prefect API just
    for that, so the call logs and returns an empty list.

    Returns:
        The artifact ids created (empty outside a run).
    """
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        logger.debug("create_run_artifacts: not inside a Prefect run; no artifacts created")
        return []
    ids = [
        create_markdown_artifact(
            markdown=summary_markdown(gates, facts), key="synthgate-summary", description=gates.summary()
        ),
        create_table_artifact(table=metric_records(gates), key="synthgate-metrics", description="gate metrics"),
    ]
    return ids


# ------------------------------------------------------------------------------------------------------ terminal
def summary_table(metadata: OutputMetadata) -> Table:
    """A rich table of a run for the terminal: verdict in the title, every metric, and the key facts in the caption."""
    gates = metadata.gates
    style = "bold green" if gates.passed else "bold red"
    table = Table(title=f"[{style}]{gates.summary()}[/]", caption=_caption(metadata), show_lines=False)
    for name, justify in (
        ("group", "left"),
        ("metric", "left"),
        ("value", "right"),
        ("threshold", "right"),
        ("verdict", "left"),
    ):
        table.add_column(name, justify=justify)
    for m in gates.metrics:
        sign = ">=" if m.direction == "min" else "<="
        threshold = "-" if m.threshold is None else f"{sign} {fmt(m.threshold)}"
        verdict = "[dim]info[/]" if m.passed is None else ("[green]pass[/]" if m.passed else "[bold red]FAIL[/]")
        table.add_row(m.group, m.name, fmt(m.value), threshold, verdict)
    return table


def _caption(meta: OutputMetadata) -> str:
    eps = f", epsilon {meta.epsilon:g}" if meta.epsilon is not None else ""
    return (
        f"model {meta.model}, seed {meta.seed}, rows train/holdout/output {meta.n_rows_train}/{meta.n_rows_holdout}/"
        f"{meta.n_rows_output}, data {meta.data_hash[:12]}{eps}"
    )


def facts_from_metadata(meta: OutputMetadata) -> dict[str, Any]:
    """The run facts of a published file, as the report shows them."""
    return {
        "run id": meta.run_id,
        "model": meta.model,
        "seed": meta.seed,
        "source": meta.source,
        "rows (input / train / holdout / output)": f"{meta.n_rows_input} / {meta.n_rows_train} / {meta.n_rows_holdout} / {meta.n_rows_output}",
        "data hash": meta.data_hash[:16],
        "epsilon": f"{meta.epsilon} (delta {meta.delta:.2g})"
        if meta.epsilon is not None and meta.delta is not None
        else (meta.epsilon if meta.epsilon is not None else "none (no differential privacy)"),
        "seconds per step": ", ".join(f"{k} {v:.2f}" for k, v in meta.timings.items()),
        "created": meta.created_at.isoformat(timespec="seconds"),
    }


def regenerate_report(parquet_path: str | Path, html_path: str | Path) -> Path:
    """Rebuild the HTML report of a published Parquet file from its rows and metadata.

    The metrics, verdicts and DCR histogram come from the file's metadata; the real side of the distributions is
    re-read from the run's input (`request["input"]`) and cut to the modelled columns. When the input can no longer
    be read (moved, or not accessible from here) the report is drawn from the synthetic rows alone and says so.
    """
    from synthgate.schemas.errors import InvalidInputError
    from synthgate.tasks.ingest import read_table
    from synthgate.tasks.publish import read_metadata

    meta = read_metadata(parquet_path)
    schema = TableSchema.model_validate(meta.schema_)
    synthetic = pd.read_parquet(parquet_path)
    real: pd.DataFrame | None
    try:
        request = meta.request
        real = read_table(
            request.get("input", meta.source),
            table=request.get("table"),
            encoding=request.get("encoding"),
            sep=request.get("sep"),
        )
        real = real[[c.name for c in schema.modelled if c.name in real.columns]]
    except InvalidInputError as exc:
        logger.warning("regenerate_report: real input unavailable (%s); drawing the synthetic side only", exc)
        real = None
    text = render_report(
        schema=schema,
        real=real,
        synthetic=synthetic,
        gates=meta.gates,
        facts=facts_from_metadata(meta),
        candidates=meta.candidates,
        notes=meta.notes,
    )
    return write_report(html_path, text)
