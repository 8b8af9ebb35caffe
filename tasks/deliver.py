"""The run's last step: refuse (discarding staged output) or publish Parquet and, if asked, a database table."""

from __future__ import annotations

import pandas as pd

from synthgate.schemas.errors import GateRefusedError
from synthgate.schemas.gates import GateResult
from synthgate.schemas.metadata import OutputMetadata
from synthgate.schemas.request import RunRequest
from synthgate.tasks.publish import StagedParquet, write_parquet_task
from synthgate.tasks.sql import commit_staged_task, discard_staged, stage_table_task
from synthgate.tasks.steps import PLAIN, Steps


def refusal(
    gates: GateResult, report: object, metadata: OutputMetadata, staged: StagedParquet | None
) -> GateRefusedError:
    """The error a failed gate raises, with the metadata attached; staged row groups are discarded first."""
    if staged is not None:
        staged.discard()
    error = GateRefusedError(gates, str(report))
    error.metadata = metadata
    return error


def publish_outputs(
    synthetic: pd.DataFrame,
    request: RunRequest,
    metadata: OutputMetadata,
    *,
    staged: StagedParquet | None,
    write_url: str | None = None,
    write_table: str | None = None,
    step: Steps = PLAIN,
) -> None:
    """Publish atomically: the staged file is renamed into place, or the rows are written; a database table is
    staged first and swapped in only once the Parquet file is published."""
    database = step(stage_table_task)(synthetic, write_url, write_table) if write_url and write_table else None
    try:
        if staged is not None:
            staged.commit(metadata)
        else:
            step(write_parquet_task)(synthetic, request.output, metadata)
    except BaseException:
        if database is not None:
            discard_staged(database)
        raise
    if database is not None:
        step(commit_staged_task)(database)
