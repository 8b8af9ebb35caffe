"""`ScoreSummary`: what `synthgate score` found, written into the scores' Parquet footer and shown in the report.

Stored as JSON under the `synthgate.score` key of the Parquet key-value metadata, beside nothing else, so a scores
file says which model scored it, how the threshold was calibrated and whether the batch drifted.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SCORE_METADATA_KEY = b"synthgate.score"


class Threshold(BaseModel):
    """The anomaly threshold calibrated on held-out rows (split conformal: docs/decisions.md#score-threshold)."""

    model_config = ConfigDict(frozen=True)

    value: float = Field(description="a row is an anomaly when its score is above this")
    fpr: float = Field(description="the false-positive rate asked for")
    fpr_bound: float = Field(description="the rate the holdout can guarantee: (m + 1 - rank) / (m + 1)")
    n_holdout: int
    rank: int = Field(description="the holdout score used, 1-based from the lowest")


class ScoreDrift(BaseModel):
    """Batch scores against holdout scores: a two-sample Kolmogorov-Smirnov test and two effect sizes."""

    model_config = ConfigDict(frozen=True)

    p_value: float
    ks_statistic: float = Field(description="largest gap between the two score CDFs, in [0, 1]")
    auc: float = Field(description="P(batch score > holdout score); 0.5 when the batch is as plausible as the holdout")
    alpha: float
    drifted: bool


class ColumnDrift(BaseModel):
    """One column of the batch against the reference rows: shape score (as the fidelity gate's) and a test."""

    model_config = ConfigDict(frozen=True)

    column: str
    shape: float = Field(description="1 - KS statistic (numbers) or 1 - total variation (categories)")
    p_value: float
    test: str = Field(description="ks (numbers) or chi2 (categories)")
    moved: bool


class ScoreSummary(BaseModel):
    """Everything `synthgate score` decided about one batch."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="the family that scored (gmm, vae, ...)")
    model_key: str | None = None
    model_source: str = Field(description="the published output, cache entry or saved model given")
    batch: str
    n_rows: int
    n_anomalies: int
    threshold: Threshold
    holdout_source: str = Field(description="where the calibration rows came from")
    score_drift: ScoreDrift
    columns: list[ColumnDrift] = Field(default_factory=list)
    column_reference: str = Field("", description="the rows the columns were compared with")
    alpha: float = Field(description="family-wise level of the drift verdict")
    drifted: bool
    notes: list[str] = Field(default_factory=list)

    @property
    def moved_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.moved]
