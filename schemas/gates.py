"""Gate thresholds and verdicts: what the synthetic data must meet before it may be published.

Every metric carries its value, its threshold, the direction of the comparison and its verdict, so the report and the
command line can say exactly which check refused the data and by how much.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Direction = Literal["min", "max"]  # "min": value must be >= threshold; "max": value must be <= threshold


class GateThresholds(BaseModel):
    """Thresholds for the fidelity and privacy gates; `None` turns a check into information only.

    Defaults are documented in the README's "Gates" section and are chosen to refuse an independent-marginals sampler
    and a sampler that returns (or lightly jitters) training rows, while accepting a well-fitted model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Fidelity, measured against the holdout split, never the training rows; calibration in
    # docs/decisions.md#gate-defaults.
    column_shapes_min: float | None = Field(
        0.70, ge=0, le=1, description="mean KS / TV complement over columns (missing share counted)"
    )
    pair_trends_min: float | None = Field(
        0.80, ge=0, le=1, description="mean Spearman-correlation / contingency similarity over column pairs"
    )
    detection_auc_max: float | None = Field(
        0.80, ge=0.5, le=1, description="classifier two-sample test AUC, holdout vs synthetic (0.5: indistinguishable)"
    )
    ml_utility_min: float | None = Field(0.60, ge=0, description="TSTR / TRTR score ratio (needs a target)")
    coverage_min: float | None = Field(0.80, ge=0, le=1, description="share of real categories and ranges covered")
    schema_validity_min: float | None = Field(1.0, ge=0, le=1, description="share of rows passing the input suite")
    # Privacy: same calibration (docs/decisions.md#gate-defaults).
    exact_match_ratio_max: float | None = Field(
        1.5, ge=0, description="synthetic-to-train exact-match rate / holdout-to-train exact-match rate"
    )
    dcr_share_excess_max: float | None = Field(
        0.50,
        ge=0,
        le=1,
        description="share of synthetic rows closer to train than holdout, above its no-copy baseline, "
        "as a fraction of the room above it (0: no closer than fresh data, 1: all closest to train)",
    )
    dcr_ratio_min: float | None = Field(
        0.60, ge=0, description="median distance synthetic->train / median distance holdout->train"
    )
    nndr_ratio_min: float | None = Field(
        0.50, ge=0, description="median nearest-neighbour distance ratio, synthetic vs holdout's"
    )
    mia_auc_max: float | None = Field(
        0.70, ge=0.5, le=1, description="distance-based membership-inference attack AUC (train vs holdout records)"
    )

    def for_private_run(self) -> GateThresholds:
        """The thresholds a differentially private run is judged by: detection AUC is information only unless the
        request set it, since a classifier tells DP noise apart while the budget bounds what rows reveal
        (docs/decisions.md#dp-gates)."""
        if "detection_auc_max" in self.model_fields_set:
            return self
        return self.model_copy(update={"detection_auc_max": None})


class MetricResult(BaseModel):
    """One measured check: value, threshold, direction and verdict (`passed` is None when no threshold applies)."""

    model_config = ConfigDict(frozen=True)

    name: str
    group: Literal["fidelity", "privacy"]
    value: float | None
    threshold: float | None = None
    direction: Direction = "min"
    passed: bool | None = None
    description: str = ""
    details: dict = Field(default_factory=dict)

    @classmethod
    def judge(
        cls,
        name: str,
        group: Literal["fidelity", "privacy"],
        value: float | None,
        threshold: float | None,
        direction: Direction,
        description: str = "",
        details: dict | None = None,
    ) -> MetricResult:
        """Build a result and its verdict.

        A metric that could not be computed (value None: pair trends of a one-column table, ML utility where the real
        model has no skill) is `n/a`: it neither passes nor fails, so a table too small or too narrow for one check is
        still judged by the others (docs/decisions.md#not-computed-checks).
        """
        if threshold is None or value is None:
            passed = None
        else:
            passed = value >= threshold if direction == "min" else value <= threshold
        return cls(
            name=name,
            group=group,
            value=value,
            threshold=threshold,
            direction=direction,
            passed=passed,
            description=description,
            details=details or {},
        )


class GateResult(BaseModel):
    """All metrics of a run and the overall verdict."""

    model_config = ConfigDict(frozen=True)

    metrics: list[MetricResult]
    notes: list[str] = Field(default_factory=list, description="e.g. which metrics were computed on a subsample")

    @property
    def passed(self) -> bool:
        return all(m.passed is not False for m in self.metrics)

    @property
    def not_computed(self) -> list[str]:
        """Gated checks that could not be computed (`n/a`): they count neither as passed nor as failed."""
        return [m.name for m in self.metrics if m.threshold is not None and m.value is None]

    @property
    def failing(self) -> list[str]:
        return [m.name for m in self.metrics if m.passed is False]

    def metric(self, name: str) -> MetricResult:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"no metric named {name!r}; have {[m.name for m in self.metrics]}")

    def summary(self) -> str:
        if self.passed:
            na = f" ({', '.join(self.not_computed)} n/a)" if self.not_computed else ""
            return f"PASSED: all {sum(m.passed is not None for m in self.metrics)} gated checks passed{na}"
        return "REFUSED: failing checks: " + ", ".join(self.failing)
