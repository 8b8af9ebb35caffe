"""`OutputMetadata`: what a published Parquet file says about the run that made it.

Stored as JSON under the `synthgate` key of the Parquet key-value metadata, so the file explains itself: `synthgate
report OUT.parquet` reads it back without any other state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synthgate.schemas.gates import GateResult

METADATA_KEY = b"synthgate"


class CandidateScore(BaseModel):
    """One model tried by `--model auto`: its validation scores (realism, fidelity), why it was excluded, its cost."""

    model: str
    score: float | None
    fit_seconds: float
    error: str | None = None
    detection_auc: float | None = None
    excluded: str | None = None


class OutputMetadata(BaseModel):
    """Facts about one run: request, model, seed, data hash, timings, metrics and verdicts, privacy budget."""

    model_config = ConfigDict(extra="allow")

    synthgate_version: str
    run_id: str
    created_at: datetime
    source: str
    table: str | None = None
    model: str
    seed: int
    n_rows_input: int
    n_rows_train: int
    n_rows_holdout: int
    n_rows_output: int
    data_hash: str = Field(description="sha256 of the input table's content (columns, dtypes, values)")
    schema_: dict[str, Any] = Field(alias="schema", description="the TableSchema used")
    request: dict[str, Any]
    gates: GateResult
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per step")
    epsilon: float | None = Field(None, description="differential-privacy budget spent, if any")
    delta: float | None = None
    candidates: list[CandidateScore] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    threads: dict[str, int] = Field(
        default_factory=dict, description="thread counts the run chose (docs/decisions.md#thread-counts)"
    )

    @property
    def verdict(self) -> str:
        return "published" if self.gates.passed else "refused"
