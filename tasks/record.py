"""The run's record: the `OutputMetadata` written into the Parquet footer, the report and the Prefect artifacts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from synthgate.schemas.gates import GateResult
from synthgate.schemas.metadata import OutputMetadata
from synthgate.schemas.request import RunRequest
from synthgate.tasks.dp_preprocess import PreparedTraining
from synthgate.tasks.source import Source
from synthgate.tasks.training import Trained

VERSION = "0.1.0"


def run_id() -> str:
    """The Prefect flow run's id, or a fresh uuid when the run is not orchestrated."""
    from prefect.runtime import flow_run

    return str(flow_run.id or uuid.uuid4())


def streaming_notes(*, n_sample: int, n_input: int, n_kept: int | None) -> list[str]:
    """What the report must say when the run saw a sample of the input or gated a sample of the output."""
    notes = []
    if n_sample < n_input:
        notes.append(f"trained and held out on a uniform sample of {n_sample} of {n_input} input rows")
    if n_kept is not None:
        notes.append(f"output written in row groups; gates and report measured on the first {n_kept} rows")
    return notes


def build_metadata(
    request: RunRequest,
    source: Source,
    prepared: PreparedTraining,
    trained: Trained,
    gates: GateResult,
    *,
    n_holdout: int,
    n_output: int,
    n_gated: int,
    streamed_output: bool,
    timings: dict[str, float],
    model_key: str,
) -> OutputMetadata:
    """Everything a reader of the output needs to trust or reproduce it: request, data hash, gates, budget, timings."""
    fitted = trained.fitted
    epsilon_spent, delta_spent = prepared.spent(fitted.model)
    trained_where = (
        f"trained on {fitted.device}" if trained.model_cache != "hit" else f"model reused from cache on {fitted.device}"
    )
    return OutputMetadata(
        synthgate_version=VERSION,
        run_id=run_id(),
        created_at=datetime.now(UTC),
        source=request.input,
        table=request.table,
        model=fitted.name,
        seed=request.seed,
        n_rows_input=source.n_rows,
        n_rows_train=len(prepared.train),
        n_rows_holdout=n_holdout,
        n_rows_output=n_output,
        data_hash=source.digest,
        schema=prepared.schema.model_dump(mode="json"),
        request=request.model_dump(mode="json"),
        gates=gates,
        timings={**timings, "fit_model": round(fitted.seconds, 3)},
        epsilon=epsilon_spent,
        delta=delta_spent,
        candidates=trained.candidates,
        notes=[
            trained_where,
            *prepared.notes,
            *streaming_notes(
                n_sample=len(source.frame), n_input=source.n_rows, n_kept=n_gated if streamed_output else None
            ),
        ],
        device=fitted.device,
        model_cache=trained.model_cache,
        model_key=model_key,
    )
