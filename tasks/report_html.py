"""HTML pieces shared by the table report and the image report: one stylesheet, one metric table, one banner.

Both reports are single self-contained files (inline CSS, images as base64 PNG, no scripts or fonts), so they open
offline and can be mailed; sharing the pieces keeps a metric, a verdict and a threshold looking the same in both.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synthgate.schemas.gates import GateResult, MetricResult
from synthgate.tasks.publish import atomic_path

logger = logging.getLogger(__name__)

REPORT_MODE = 0o644  # mkstemp creates 0600; a report is meant to be shared

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f7f8fa;color:#1a202c}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #e2e8f0;padding-bottom:4px}
.banner{padding:18px 22px;border-radius:8px;color:#fff;margin:16px 0}
.banner.pass{background:#2f855a} .banner.fail{background:#c53030}
.banner b{font-size:20px} .banner p{margin:6px 0 0}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{padding:6px 10px;border-bottom:1px solid #edf2f7;text-align:left;vertical-align:top}
th{background:#edf2f7} td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#2f855a;font-weight:600} .bad{color:#c53030;font-weight:600} .info{color:#718096}
tr.failrow{background:#fff5f5}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:10px}
.grid img,.wide img{background:#fff;border-radius:6px;max-width:100%}
img.pixels{image-rendering:pixelated}
.muted{color:#718096;font-size:13px} ul{margin:4px 0}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:middle;margin-right:4px}
"""


def fmt(value: Any) -> str:
    """A value for a table cell: three decimals for small floats, thousands separators for large ones."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def png_uri(png: bytes) -> str:
    """PNG bytes as a data URI an `<img src>` can hold, so the report needs no file beside it."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def verdict(metric: MetricResult) -> str:
    if metric.passed is None:
        return '<span class="info">info</span>'
    return '<span class="ok">pass</span>' if metric.passed else '<span class="bad">FAIL</span>'


def _threshold(metric: MetricResult) -> str:
    sign = "&ge;" if metric.direction == "min" else "&le;"
    return "&mdash;" if metric.threshold is None else f"{sign} {fmt(metric.threshold)}"


def metric_table(gates: GateResult) -> str:
    """Every metric: group, name, value, threshold, verdict and what it measures; failing rows tinted."""
    rows = []
    for m in gates.metrics:
        cls = ' class="failrow"' if m.passed is False else ""
        rows.append(
            f"<tr{cls}><td>{m.group}</td><td><b>{html.escape(m.name)}</b></td><td class='num'>{fmt(m.value)}</td>"
            f"<td class='num'>{_threshold(m)}</td><td>{verdict(m)}</td><td class='muted'>{html.escape(m.description)}</td></tr>"
        )
    head = "<tr><th>group</th><th>metric</th><th>value</th><th>threshold</th><th>verdict</th><th>what it measures</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def kv_table(items: Mapping[str, Any]) -> str:
    """A two-column table of facts (model, seed, rows, timings, ...)."""
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(fmt(v))}</td></tr>" for k, v in items.items())
    return f"<table>{rows}</table>"


PENDING_MARK = "<!-- synthgate:pending -->"


def banner(gates: GateResult, *, what: str = "synthetic table", pending: bool = False) -> str:
    """The verdict first: green with the count of passed checks, or red listing each failing check and its need.

    `pending`: the checks passed but the output is not committed yet. The report is written before the output, so
    until `mark_published` swaps this banner it says NOT PUBLISHED; a run killed in between makes no false claim.
    """
    gated = [m for m in gates.metrics if m.passed is not None]
    if gates.passed and pending:
        return (
            f'{PENDING_MARK}<div class="banner fail"><b>NOT PUBLISHED: the {len(gated)} gated checks passed, but the '
            "output was not committed</b><p>This report is written before the output file. If you read this banner "
            "after the run ended, the run stopped before the output was committed and nothing was published.</p>"
            f"</div>{PENDING_MARK}"
        )
    if gates.passed:
        return (
            f'<div class="banner pass"><b>PUBLISHED: all {len(gated)} gated checks passed</b>'
            f"<p>The {what} met every fidelity and privacy threshold below.</p></div>"
        )
    failing = [
        f"<li><b>{html.escape(m.name)}</b> = {fmt(m.value)} (needs {_threshold(m)})</li>"
        for m in gates.metrics
        if m.passed is False
    ]
    return (
        f'<div class="banner fail"><b>REFUSED: {len(failing)} of {len(gated)} gated checks failed</b>'
        f"<ul>{''.join(failing)}</ul><p>Nothing was published.</p></div>"
    )


def mark_published(path: str | Path, gates: GateResult, *, what: str = "synthetic table") -> Path:
    """After the output is committed, turn a pending report's banner into the PUBLISHED one (atomically)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    start, end = text.find(PENDING_MARK), text.rfind(PENDING_MARK)
    if start < 0 or end == start:
        return path
    with atomic_path(path) as tmp:
        tmp.write_text(text[:start] + banner(gates, what=what) + text[end + len(PENDING_MARK) :], encoding="utf-8")
        tmp.chmod(REPORT_MODE)
    return path


def page(title: str, body: str) -> str:
    """A complete HTML document around `body`, with the shared stylesheet inline."""
    title = html.escape(title)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{CSS}</style></head>
<body><main>
<h1>{title}</h1>
{body}
</main></body></html>
"""


def write_html(path: str | Path, text: str) -> Path:
    """Write a report atomically (temp file beside it, then rename), readable by everyone it is shared with."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(REPORT_MODE)
    logger.info("report: wrote %s (%d kB)", path, len(text) // 1024)
    return path
