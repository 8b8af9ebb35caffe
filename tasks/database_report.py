"""Publish a synthetic database: one Parquet file per table, all or none, and one HTML report for the database.

Every table is written to a temporary file beside its target first; only when all are written are they renamed onto
their targets, so a failure while writing leaves the old files (or none) in place, never a mix of old and new tables
that no longer reference each other.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.schemas.gates import GateResult
from synthgate.tasks.publish import temporary_prefix
from synthgate.tasks.relational import SyntheticDatabase
from synthgate.tasks.report_html import banner, fmt, kv_table, metric_table, page, write_html

logger = logging.getLogger(__name__)

METADATA_KEY = b"synthgate.database"


def table_checks(name: str, syn: SyntheticDatabase, gates: GateResult) -> dict[str, Any]:
    """The checks that judge one table: its own, and those of the relations it is the child of (joined rows)."""
    relations = {r.name for r in syn.schema.relations if r.child == name}
    mine = [m for m in gates.metrics if ": " in m.name and m.name.split(": ", 1)[1] in {name, *relations}]
    return {m.name: {"value": m.value, "threshold": m.threshold, "passed": m.passed} for m in mine}


def write_tables(
    syn: SyntheticDatabase, folder: Path, facts: dict[str, Any], gates: GateResult | None = None
) -> dict[str, Path]:
    """Write every table to `folder/<table>.parquet`; all renamed into place only after all were written.

    Each file's metadata carries the run's facts, the table's model and context, how many real rows its model never
    saw (its privacy holdout), and the checks that judged it (`table_checks`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    staged: dict[str, tuple[str, Path]] = {}
    try:
        for name, frame in syn.tables.items():
            target = folder / f"{name}.parquet"
            fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(target), suffix=".tmp", dir=folder)
            os.close(fd)
            staged[name] = (tmp, target)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            meta = {**facts, "table": name, "context": syn.context.get(name), "model": syn.models.get(name),
                    "holdout_rows": len(syn.holdout.get(name, ())),
                    "checks": table_checks(name, syn, gates) if gates is not None else {}}  # fmt: skip
            table = table.replace_schema_metadata(
                {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(meta, default=str).encode()}
            )
            pq.write_table(table, tmp, compression="zstd")
            os.chmod(tmp, 0o644)
        for tmp, target in staged.values():
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    logger.info("database_publish folder=%s tables=%d", folder, len(staged))
    return {name: target for name, (_, target) in staged.items()}


def _tables_section(syn: SyntheticDatabase) -> str:
    rows = []
    for name, frame in syn.tables.items():
        cells = [
            name,
            f"{len(syn.real[name]):,}",
            f"{len(frame):,}",
            ", ".join(syn.schema.primary_key(name)) or "&mdash;",
            html.escape(syn.context.get(name) or "root"),
            syn.models.get(name) or "keys only",
            f"{len(syn.holdout.get(name, ())):,}",
            fmt(syn.seconds.get(name)),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "table",
            "real rows",
            "synthetic rows",
            "primary key",
            "generated under",
            "model",
            "held out",
            "seconds",
        )
    )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _relations_section(syn: SyntheticDatabase) -> str:
    rows = [
        f"<tr><td><b>{html.escape(r.name)}</b></td><td>{r.source}</td><td>{r.on_orphans}</td>"
        f"<td class='muted'>{html.escape(r.evidence)}</td></tr>"
        for r in syn.schema.relations
    ]
    head = "<tr><th>relation</th><th>from</th><th>orphan keys</th><th>evidence</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def render_database_report(syn: SyntheticDatabase, gates: GateResult, facts: dict[str, Any], *, pending: bool) -> str:
    """The report: verdict, facts, tables, relations with their evidence, every metric."""
    body = (
        banner(gates, what="synthetic database", pending=pending)
        + kv_table(facts)
        + "<h2>Tables</h2>"
        + _tables_section(syn)
        + "<h2>Relations</h2>"
        + _relations_section(syn)
        + "<h2>Checks</h2>"
        + metric_table(gates)
        + "".join(f"<p class='muted'>{html.escape(n)}</p>" for n in gates.notes)
    )
    return page(f"synthgate database report: {facts.get('source', '')}", body)


def write_database_report(path: Path, text: str) -> Path:
    return write_html(path, text)


write_tables_task = task(name="publish-database", cache_policy=NO_CACHE)(write_tables)
