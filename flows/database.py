"""The `synthesize-database` flow: a whole database in, a gated synthetic copy with every key holding out.

Composition only: read the tables and their keys, check them, synthesise parents before children, judge the result,
write the report, and publish every table (all or none) only when every gate passed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from synthgate.schemas.errors import GateRefusedError
from synthgate.schemas.gates import GateResult
from synthgate.schemas.relations import load_models
from synthgate.tasks.database_report import render_database_report, write_database_report, write_tables
from synthgate.tasks.database_write import commit_database, discard_database, stage_database
from synthgate.tasks.relational import DEFAULT_MODEL, SyntheticDatabase, synthesize_database
from synthgate.tasks.relational_gates import judge_database
from synthgate.tasks.relations import check_database, read_database, table_order
from synthgate.tasks.report_html import mark_published

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"


@dataclass
class DatabaseResult:
    """What a database run produced."""

    outputs: dict[str, Path]
    report: Path
    gates: GateResult
    synthetic: SyntheticDatabase
    seconds: float


def run_database(
    source: str,
    output: Path,
    *,
    scale: float = 1.0,
    model: str = DEFAULT_MODEL,
    models: Path | dict[str, str] | None = None,
    seed: int = 0,
    relations: Path | None = None,
    model_options: dict[str, Any] | None = None,
    write_url: str | None = None,
    orchestrate: bool = True,
    time_budget: float | None = None,
) -> DatabaseResult:
    """Synthesise every table of `source` into `output/<table>.parquet`, plus `output/report.html`.

    Args:
        source: a SQLAlchemy URL or a folder of CSV/Parquet files, one per table.
        output: the folder to publish into.
        scale: root tables' rows as a share of the source's; children follow their parents.
        model: the model family for every table `models` does not name.
        models: a model manifest (YAML `table: family`, see `schemas.relations.load_models`) or the map itself; a
            `models:` section of the relations file is read too, this one wins.
        seed: makes the run reproducible.
        relations: a `relations.yaml` (default `SOURCE/relations.yaml` for a folder).
        model_options: hyperparameters for every table's model.
        write_url: also replace every table in this database (SQLAlchemy URL), in one transaction, parents first.
        orchestrate: run the steps as Prefect tasks (inside the flow); False calls the plain functions.
        time_budget: seconds the tables fitted with `auto` share (default scaled to the database).

    Raises:
        InvalidInputError: a source that cannot be read, or keys that do not hold (named, with the fix).
        GateRefusedError: a gate failed; the report was written, no table was.
    """
    start = time.perf_counter()

    def step(fn: Any, name: str) -> Any:
        return task(name=name, cache_policy=NO_CACHE)(fn) if orchestrate else fn

    db = step(read_database, "read-database")(source, relations_path=relations)
    db = step(check_database, "check-keys")(db)
    manifest = load_models(models) if isinstance(models, (str, Path)) else models
    syn = step(synthesize_database, "synthesize-tables")(db, scale=scale, model=model, models=manifest, seed=seed,
                                                         model_options=model_options, time_budget=time_budget)  # fmt: skip
    gates = step(judge_database, "judge-database")(syn, seed=seed)
    fitted = ", ".join(f"{t}: {m}" for t, m in syn.models.items() if m)
    facts = {"source": db.source, "tables": len(syn.tables), "relations": len(db.schema.relations), "model": fitted,
             "seed": seed, "scale": scale, "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    report = Path(output) / REPORT_NAME
    write_database_report(report, render_database_report(syn, gates, facts, pending=gates.passed))
    if not gates.passed:
        raise GateRefusedError(gates, str(report))
    if write_url is None:
        outputs = step(write_tables, "publish-database")(syn, Path(output), facts, gates)
    else:  # staged first (slow, invisible), then the files, then one swap: both are published or neither
        staged = step(stage_database, "stage-database")(syn.tables, table_order(db.schema, list(syn.tables)), write_url)
        try:
            outputs = step(write_tables, "publish-database")(syn, Path(output), facts, gates)
            step(commit_database, "write-database")(staged)
        finally:
            discard_database(staged)
    mark_published(report, gates, what="synthetic database")
    return DatabaseResult(outputs, report, gates, syn, round(time.perf_counter() - start, 2))


@flow(name="synthesize-database", log_prints=False)
def synthesize_database_flow(
    source: str,
    output: Path,
    scale: float = 1.0,
    model: str = DEFAULT_MODEL,
    models: Path | None = None,
    seed: int = 0,
    relations: Path | None = None,
    write_url: str | None = None,
    time_budget: float | None = None,
) -> DatabaseResult:
    """The Prefect flow around `run_database`: one flow run, one task per step."""
    return run_database(source, output, scale=scale, model=model, models=models, seed=seed, relations=relations,
                        write_url=write_url, time_budget=time_budget)  # fmt: skip
