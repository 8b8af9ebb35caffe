"""Read the source and settle its schema, whole or in two batched passes, into one `Source` the flow splits.

A table that fits is read whole, hashed, inferred and validated. A large one (see `tasks.plan`) is read twice in
batches: the first pass profiles the schema, the second validates every batch, hashes the content and keeps a uniform
sample to train on, so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from synthgate.schemas.request import RunRequest
from synthgate.schemas.table import TableSchema
from synthgate.tasks.ingest import data_hash, read_table_task
from synthgate.tasks.plan import RunPlan
from synthgate.tasks.preprocess import resolve_schema_task
from synthgate.tasks.scan import profile_source_task, resolve_profiled_schema, scan_source_task
from synthgate.tasks.steps import PLAIN, Steps
from synthgate.tasks.validate import validate_table_task


@dataclass
class Ingested:
    """The source read (whole) or profiled (streamed), with its resolved schema; not yet validated."""

    schema: TableSchema
    frame: pd.DataFrame | None = None  # None when streamed: the rows are read again while validating
    digest: str | None = None


@dataclass
class Source:
    """Validated rows to split: the whole table, or a uniform sample of a streamed one.

    Attributes:
        frame: the rows the run trains and holds out on.
        schema: the resolved schema.
        digest: content hash of the whole input (the model cache keys on it).
        n_rows: rows in the whole input (more than `len(frame)` when streamed and sampled).
    """

    frame: pd.DataFrame
    schema: TableSchema
    digest: str
    n_rows: int


def table_name(request: RunRequest) -> str:
    """The name the schema and report give the table: dataset name, SQL table, or file stem."""
    if request.input.startswith("dataset:"):
        return request.input.split(":", 1)[1]
    if request.table and not request.table.lower().startswith(("select", "with")):
        return request.table
    return Path(request.input).stem or "table"


def describe_source(request: RunRequest) -> str:
    """How errors name the input: the path or URL, with the table or query for SQL."""
    return request.input if not request.table else f"{request.input} ({request.table})"


def ingest_source(request: RunRequest, plan: RunPlan, *, step: Steps = PLAIN) -> Ingested:
    """Read the whole table and resolve its schema, or, when streaming, profile the schema in one batched pass."""
    if plan.stream_input:
        profiled = step(profile_source_task)(
            request.input,
            table=request.table,
            name=table_name(request),
            batch_rows=plan.options.batch_rows,
            encoding=request.encoding,
            sep=request.sep,
        )
        return Ingested(schema=resolve_profiled_schema(profiled, request.schema_path))
    frame = step(read_table_task)(request.input, table=request.table, encoding=request.encoding, sep=request.sep)
    digest = data_hash(frame)
    schema = step(resolve_schema_task)(frame, name=table_name(request), schema_path=request.schema_path)
    return Ingested(schema=schema, frame=frame, digest=digest)


def validate_source(ingested: Ingested, request: RunRequest, plan: RunPlan, *, step: Steps = PLAIN) -> Source:
    """Validate against the schema (fail fast); streaming also hashes and samples in the same pass."""
    if ingested.frame is None:
        max_rows = plan.options.max_train_rows
        scanned = step(scan_source_task)(
            request.input,
            ingested.schema,
            table=request.table,
            display=describe_source(request),
            max_rows=max_rows + round(max_rows * request.holdout_fraction),
            seed=request.seed,
            batch_rows=plan.options.batch_rows,
            encoding=request.encoding,
            sep=request.sep,
        )
        return Source(scanned.sample, ingested.schema, scanned.data_hash, scanned.n_rows)
    step(validate_table_task)(ingested.frame, ingested.schema, source=describe_source(request))
    assert ingested.digest is not None  # set with the frame by ingest_source
    return Source(ingested.frame, ingested.schema, ingested.digest, len(ingested.frame))
