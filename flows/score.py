"""`run_score`: one batch scored by the model behind a published output, its threshold calibrated and its drift
judged; the body of `synthgate score` and of each `watch-table` run.

Composition only, as `flows.synthesize.run_table`: find the model, read and check the batch, rebuild the rows the
model never saw, score both, calibrate, test for drift, write the scores and the report. `step` says whether the task
calls go through Prefect (inside `watch-table`) or run as plain functions (the command line).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.metadata import OutputMetadata
from synthgate.schemas.scoring import ScoreSummary
from synthgate.tasks.drift import DEFAULT_ALPHA, calibrate, column_drift, score_drift
from synthgate.tasks.ingest import read_table_task
from synthgate.tasks.score import (
    ScoringModel,
    check_batch,
    find_model_task,
    score_rows_task,
    split_from_metadata,
    write_scores_task,
)
from synthgate.tasks.steps import PLAIN, Steps


@dataclass(frozen=True)
class ScoreRequest:
    """What to score with which model, and where the results go.

    Attributes:
        model: a published output (OUT.parquet), a model-store entry, or a saved model directory.
        input: the batch: anything `synthgate run --input` reads.
        output: the scores' Parquet file.
        fpr: the false-positive rate the threshold is calibrated to on unseen rows.
        report: the HTML drift report, or None for none.
        reference: rows the model never saw, to calibrate on instead of the rebuilt holdout.
        alpha: family-wise level of the drift verdict.
    """

    model: str
    input: str
    output: Path
    fpr: float = 0.01
    report: Path | None = None
    reference: str | None = None
    cache_dir: Path | None = None
    table: str | None = None
    encoding: str | None = None
    sep: str | None = None
    alpha: float = DEFAULT_ALPHA
    device: str = "cpu"


@dataclass
class ScoreResult:
    """The summary written into the scores' footer, and where the scores and the report went."""

    summary: ScoreSummary
    output: Path
    report: Path | None
    metadata: OutputMetadata | None = None  # the run behind the model, when it was found through its output

    @property
    def drifted(self) -> bool:
        return self.summary.drifted


def _unseen_rows(
    scoring: ScoringModel, request: ScoreRequest, step: Steps
) -> tuple[pd.DataFrame, pd.DataFrame, str, str, list[str]]:
    """(calibration rows, column reference rows, their descriptions, notes): `--reference`, else the rebuilt split."""
    schema = scoring.schema
    if request.reference is not None:
        frame = step(read_table_task)(request.reference)
        rows, notes = check_batch(frame, schema, source=request.reference, strict=False)
        return rows, rows, request.reference, request.reference, notes
    if scoring.metadata is None:
        raise InvalidInputError(
            f"{scoring.source}: a model without its run's metadata has no known holdout. Fix: pass --model OUT.parquet "
            "(the run's output) or --reference with rows the model never saw"
        )
    train, holdout = split_from_metadata(scoring.metadata)
    held, notes = check_batch(holdout, schema, source="the run's holdout", strict=False)
    trained, more = check_batch(train, schema, source="the run's training rows", strict=False)
    where = f"{scoring.metadata.source} (seed {scoring.metadata.seed})"
    return held, trained, f"the run's holdout of {where}", f"the run's training rows of {where}", notes + more


def run_score(request: ScoreRequest, *, step: Steps = PLAIN) -> ScoreResult:
    """Score `request.input` and judge its drift; see the module docstring.

    Raises:
        InvalidInputError: no usable model, an unreadable batch or reference, or no rows to calibrate on.
        ValidationFailedError: the batch breaks the model's schema (every failure listed).
    """
    scoring = step(find_model_task)(request.model, cache_dir=request.cache_dir, device=request.device)
    batch = step(read_table_task)(request.input, table=request.table, encoding=request.encoding, sep=request.sep)
    rows, notes = check_batch(batch, scoring.schema, source=request.input)
    held, reference, held_from, reference_from, more = _unseen_rows(scoring, request, step)
    held_scored = step(score_rows_task)(scoring, held)
    holdout_scores = held_scored.score
    threshold = calibrate(holdout_scores, request.fpr)
    if threshold.fpr_bound > request.fpr:
        notes.append(
            f"the holdout has {threshold.n_holdout} rows: the smallest false-positive rate it can calibrate is "
            f"{threshold.fpr_bound:.2%}, above the {request.fpr:.2%} asked; pass a larger --reference to go lower"
        )
    scored = step(score_rows_task)(scoring, rows)
    broken = list(scored.rules.values())
    if broken:
        rules = sorted({rule for found in broken for rule, _ in found})
        notes.append(f"{len(broken)} row(s) break a rule between columns the model holds ({'; '.join(rules[:5])}): "
                     "scored +inf, as the model gives them probability zero")  # fmt: skip
    half = request.alpha / 2  # half for the scores, half shared by the columns: family-wise level alpha
    scores_moved = score_drift(scored.score, holdout_scores, alpha=half)
    columns = column_drift(rows, reference, scoring.schema, alpha=half)
    summary = ScoreSummary(
        model=scoring.name, model_key=scoring.key, model_source=scoring.source, batch=request.input,
        n_rows=len(rows), n_anomalies=int((scored.score > threshold.value).sum()), threshold=threshold,
        holdout_source=held_from, score_drift=scores_moved, columns=columns, column_reference=reference_from,
        alpha=request.alpha, drifted=scores_moved.drifted or any(c.moved for c in columns), notes=notes + more,
    )  # fmt: skip
    typical = held_scored.parts.median()  # a column's usual part: top columns are those above theirs
    output = step(write_scores_task)(batch, scored, threshold, summary, request.output, typical=typical)
    report = None
    if request.report is not None:
        from synthgate.tasks.score_report import render_score_report, write_score_report

        html = render_score_report(
            summary, batch_scores=scored.score, holdout_scores=holdout_scores, batch=rows, reference=reference,
            schema=scoring.schema,
        )  # fmt: skip
        report = write_score_report(request.report, html)
    return ScoreResult(summary, output, report, scoring.metadata)
