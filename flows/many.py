"""The `synthesize-many` flow: many tables (listed, or a whole database schema) synthesised in parallel.

A manifest is YAML:

```yaml
output_dir: out/many              # default output: <output_dir>/<name>.parquet
defaults: {model: gmm, seed: 0}   # any RunRequest field, applied to every table
tables:
  - input: data/customers.csv     # relative paths are relative to the manifest's folder
  - input: sqlite:///shop.db
    table: orders
    rows: 5000
    name: orders_2024             # optional: names the output and the summary row
database:                         # optional: every table of a database (SQLAlchemy inspection)
  url: postgresql+psycopg://synth@db/shop
  schema: public                  # optional
  include: [orders, customers]    # optional
  exclude: [audit_log]            # optional
```

Each table is one `synthesize-table` subflow inside one mapped task. A table that fails, or that a gate refuses,
becomes a row in the summary and never costs the others their outputs: outcomes are collected, not raised. The
summary is returned and published as a Prefect table artifact.

Runners: threads (default) or Ray (`runner="ray"`): each table's task then runs in a Ray worker. Training happens
inside that task, so the GPU is requested per table task, and only when the cluster has GPUs: a Ray task asking for
a GPU the cluster lacks waits forever.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synthgate.flows.synthesize import synthesize_table
from synthgate.schemas.errors import GateRefusedError, InvalidInputError
from synthgate.schemas.request import RunRequest
from synthgate.tasks.reader import is_sql_url, redact

logger = logging.getLogger(__name__)

SUMMARY_KEY = "synthesize-many-summary"


class DatabaseSource(BaseModel):
    """Every table of one database schema, found by SQLAlchemy inspection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    schema_name: str | None = Field(None, alias="schema")
    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)


class Manifest(BaseModel):
    """The manifest file, validated strictly so a typo fails before any table runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    output_dir: Path = Path("out/many")
    defaults: dict[str, Any] = Field(default_factory=dict)
    tables: list[dict[str, Any]] = Field(default_factory=list)
    database: DatabaseSource | None = None


def _resolve(base: Path, value: str) -> str:
    """Relative file paths in a manifest are relative to the manifest, wherever the command runs."""
    if value.startswith("dataset:") or is_sql_url(value) or Path(value).is_absolute():
        return value
    return str(base / value)


def database_tables(source: DatabaseSource) -> list[str]:
    """Table names in `source` (views and `_synthgate_stage_*` leftovers excluded), include/exclude applied."""
    import sqlalchemy as sa

    engine = sa.create_engine(source.url)
    try:
        names = sa.inspect(engine).get_table_names(schema=source.schema_name)
    except sa.exc.OperationalError as exc:
        raise InvalidInputError(
            f"{redact(source.url)}: cannot reach the database to list its tables ({exc.orig}); check the host, "
            "port, credentials and that the server is running"
        ) from exc
    finally:
        engine.dispose()
    names = [n for n in names if not n.startswith("_synthgate_stage_")]
    if source.include is not None:
        unknown = sorted(set(source.include) - set(names))
        if unknown:
            raise InvalidInputError(f"{redact(source.url)}: include names unknown tables {unknown}; tables are {names}")
        names = [n for n in names if n in source.include]
    return [n for n in names if n not in set(source.exclude)]


def load_manifest(path: Path | str) -> list[tuple[str, RunRequest]]:
    """Read a manifest into (name, request) pairs, validating every request up front.

    Raises:
        InvalidInputError: unreadable YAML, unknown keys, an invalid table entry (named), duplicate names, no tables.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{path}: manifest not found")
    try:
        manifest = Manifest.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise InvalidInputError(f"{path}: not a valid manifest: {exc}") from exc
    base = path.resolve().parent
    entries = [dict(t) for t in manifest.tables]
    if manifest.database is not None:
        source = manifest.database
        qualify = f"{source.schema_name}." if source.schema_name else ""
        entries += [
            {"input": source.url, "table": f"{qualify}{name}", "name": name} for name in database_tables(source)
        ]
    if not entries:
        raise InvalidInputError(f"{path}: no tables: list them under `tables:` or name a `database:`")
    output_dir = manifest.output_dir if manifest.output_dir.is_absolute() else base / manifest.output_dir
    jobs: list[tuple[str, RunRequest]] = []
    for i, entry in enumerate(entries):
        if "input" not in entry:
            raise InvalidInputError(f"{path}: table #{i + 1} has no `input`")
        entry["input"] = _resolve(base, str(entry["input"]))
        name = str(entry.pop("name", None) or entry.get("table") or Path(entry["input"]).stem)
        if " " in name:  # a SELECT query as the table: name it after its position instead
            name = f"query{i + 1}"
        fields = {**manifest.defaults, **entry}
        fields.setdefault("output", output_dir / f"{name}.parquet")
        try:
            jobs.append((name, RunRequest.from_sources(None, **fields)))
        except InvalidInputError as exc:
            raise InvalidInputError(f"{path}: table {name!r}: {exc}") from exc
    names = [n for n, _ in jobs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInputError(f"{path}: tables {duplicates} appear twice; give them distinct `name:`s")
    return jobs


def run_table(name: str, request: RunRequest, use_cache: bool = True, cache_dir: Path | None = None) -> dict[str, Any]:
    """One table's subflow, its outcome as a summary row. Never raises: one table must not sink the batch."""
    start = time.perf_counter()
    row: dict[str, Any] = {"table": name, "source": redact(request.input), "status": "", "output": None}
    try:
        result = synthesize_table(request, use_cache=use_cache, cache_dir=cache_dir)
        meta = result.metadata
        row.update(
            status="published",
            output=str(result.output),
            rows=meta.n_rows_output,
            model=meta.model,
            model_cache=result.model_cache,
            report=str(result.report),
        )
    except GateRefusedError as exc:
        row.update(status="refused", report=getattr(exc, "report_path", None), error=str(exc))
    except InvalidInputError as exc:
        row.update(status="bad input", error=str(exc))
    except Exception as exc:  # a bug: keep going, but say so loudly
        logger.exception("many: table %s failed unexpectedly", name)
        row.update(status="error", error=f"{type(exc).__name__}: {exc}")
    row["seconds"] = round(time.perf_counter() - start, 2)
    logger.info("many_table table=%s status=%s seconds=%.2f", name, row["status"], row["seconds"])
    return row


run_table_task = task(name="synthesize-one", task_run_name="synthesize-{name}", cache_policy=NO_CACHE)(run_table)


def ray_gpu_options(gpus_per_table: float | None) -> dict[str, float]:
    """Ray resources for one table's task: a GPU share only when the connected cluster has GPUs.

    Args:
        gpus_per_table: GPUs (or a fraction) each table's task asks for; None means 1 when the cluster has any.

    Raises:
        InvalidInputError: a GPU was asked for explicitly but the cluster has none (Ray would wait forever).
    """
    import ray

    available = float(ray.cluster_resources().get("GPU", 0))
    if available <= 0:
        if gpus_per_table:
            raise InvalidInputError(
                f"asked for {gpus_per_table} GPU per table but the Ray cluster has no GPU; a Ray task asking for one "
                "would wait forever. Drop --gpus-per-table or add GPU nodes"
            )
        return {}
    share = 1.0 if gpus_per_table is None else float(gpus_per_table)
    if share > available:
        raise InvalidInputError(f"asked for {share} GPU per table but the Ray cluster has only {available}")
    return {"num_gpus": share} if share > 0 else {}


def _summarise(rows: list[dict[str, Any]]) -> None:
    from prefect.artifacts import create_table_artifact

    columns = ("table", "status", "rows", "model", "model_cache", "seconds", "output", "error")
    table = [{c: row.get(c) for c in columns} for row in rows]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("published", "refused", "bad input", "error")}
    create_table_artifact(
        key=SUMMARY_KEY,
        table=table,
        description=", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no tables",
    )
    logger.info("many_summary %s", " ".join(f"{s.replace(' ', '_')}={n}" for s, n in counts.items()))


@flow(name="synthesize-many", log_prints=False)
def synthesize_many(
    manifest: Path,
    use_cache: bool = True,
    cache_dir: Path | None = None,
    gpus_per_table: float | None = None,
) -> list[dict[str, Any]]:
    """Synthesise every table of a manifest in parallel and summarise; see the module docstring for the format."""
    from prefect.context import FlowRunContext

    jobs = load_manifest(manifest)
    runner = FlowRunContext.get().task_runner
    options: dict[str, float] = {}
    if type(runner).__name__ == "RayTaskRunner":
        options = ray_gpu_options(gpus_per_table)
    names, requests = [n for n, _ in jobs], [r for _, r in jobs]
    if options:
        from prefect_ray.context import remote_options

        with remote_options(**options):
            futures = run_table_task.map(names, requests, unmapped(use_cache), unmapped(cache_dir))
    else:
        futures = run_table_task.map(names, requests, unmapped(use_cache), unmapped(cache_dir))
    rows = [f.result() for f in futures]
    _summarise(rows)
    return rows


def make_task_runner(runner: str = "threads", *, ray_address: str | None = None, max_workers: int = 2) -> Any:
    """The task runner for `synthesize_many`: threads on this machine, or Ray (a local one, or `ray_address`).

    Args:
        runner: "threads" or "ray".
        ray_address: a running cluster, e.g. "ray://head:10001" (Ray Client) or "auto" (this node's cluster);
            None starts a local single-node Ray for the run.
        max_workers: tables at once with threads (each table also trains; the `gpu` tag limit caps that).
    """
    if runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=max_workers)
    if runner == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as exc:
            raise InvalidInputError("--runner ray needs prefect-ray: pip install 'synthgate[ray]'") from exc
        init_kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if ray_address is None:
            init_kwargs["num_cpus"] = max_workers
        return RayTaskRunner(address=ray_address, init_kwargs=init_kwargs)
    raise InvalidInputError(f"unknown runner {runner!r}; choose threads or ray")


def run_many(
    manifest: Path,
    *,
    runner: str = "threads",
    ray_address: str | None = None,
    max_workers: int = 2,
    use_cache: bool = True,
    cache_dir: Path | None = None,
    gpus_per_table: float | None = None,
) -> list[dict[str, Any]]:
    """Validate the manifest (cheap, before any server or cluster starts), then run the flow on the chosen runner."""
    load_manifest(manifest)
    task_runner = make_task_runner(runner, ray_address=ray_address, max_workers=max_workers)
    return synthesize_many.with_options(task_runner=task_runner)(
        Path(manifest), use_cache=use_cache, cache_dir=cache_dir, gpus_per_table=gpus_per_table
    )
