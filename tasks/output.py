"""Draw the synthetic rows: whole in memory, or streamed in row groups into a staged Parquet file."""

from __future__ import annotations

import pandas as pd

from synthgate.schemas.request import RunRequest
from synthgate.schemas.table import TableSchema
from synthgate.tasks.dp_preprocess import PreparedTraining
from synthgate.tasks.protect import complete_output_task
from synthgate.tasks.publish import StagedParquet
from synthgate.tasks.sample import sample_rows_task, stream_output_task
from synthgate.tasks.steps import PLAIN, Steps
from synthgate.tasks.text_columns import TextOutcome, synthesize_text_task, text_actions
from synthgate.tasks.training import Trained

# Streamed output: the gates and report see the first rows (docs/decisions.md#streaming-thresholds).
GATE_SAMPLE_ROWS = 200_000


def draw_synthetic(
    trained: Trained,
    train: pd.DataFrame,
    schema: TableSchema,
    request: RunRequest,
    n_rows: int,
    *,
    staged: StagedParquet | None,
    n_holdout: int,
    real: pd.DataFrame | None = None,
    step: Steps = PLAIN,
) -> pd.DataFrame:
    """`n_rows` complete output rows (every source column, PII faked), or with `staged` the first ones kept.

    With `staged`, all rows go to the staged file batch by batch and the returned frame holds the first
    `max(GATE_SAMPLE_ROWS, n_holdout)` of them, a uniform sample (draws are independent) for the gates and report.
    `real` (default `train`) is every real row the output's keys and fake values must differ from.
    """
    model, encoder = trained.fitted.model, trained.encoder
    real = train if real is None else real
    if staged is not None:
        return step(stream_output_task)(
            model,
            encoder,
            schema,
            n_rows,
            staged,
            seed=request.seed,
            keep_rows=max(GATE_SAMPLE_ROWS, n_holdout),
            conditions=request.conditions,
            real=real,
        )
    synthetic = step(sample_rows_task)(
        model,
        encoder,
        n_rows,
        seed=request.seed,
        conditions=request.conditions,
        balance=request.balance,
        rows_per_class=request.rows_per_class,
        train=train,
    )
    return step(complete_output_task)(synthetic, schema, seed=request.seed, real=real)


def synthesize_text_columns(
    synthetic: pd.DataFrame,
    prepared: PreparedTraining,
    holdout: pd.DataFrame,
    trained: Trained,
    request: RunRequest,
    *,
    streamed: bool,
    step: Steps = PLAIN,
) -> TextOutcome:
    """The output with its free-text columns synthesised from the training text (`tasks.text_columns`).

    A streamed output is already written batch by batch, so its text columns keep the Faker text, with a note.
    """
    if streamed:
        private = prepared.private is not None
        actions, _ = text_actions(prepared.schema, prepared.train, request.text, private=private)
        todo = sorted(name for name, action in actions.items() if action != "fake")
        notes = [f"text columns {todo}: streamed output keeps Faker text (synthesis runs on in-memory output)"]
        return TextOutcome(synthetic, notes * bool(todo), [], actions)
    return step(synthesize_text_task)(
        synthetic,
        prepared.train,
        holdout,
        prepared.schema,
        trained.encoder,
        seed=request.seed,
        overrides=request.text,
        budget=prepared.text_budget if prepared.private is not None else None,
        device=request.device,
    )
