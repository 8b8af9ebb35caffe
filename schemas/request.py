"""`RunRequest`: everything one synthesis run needs, validated before any work starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.gates import GateThresholds


class ParquetRunRequest(BaseModel):
    """What the table and image run requests share: `output` is a Parquet file, the report defaults to beside it.

    Each subclass declares `output` and `report_path` itself, so its fields keep their own order.
    """

    @field_validator("output", check_fields=False)
    @classmethod
    def _parquet_output(cls, value: Path) -> Path:
        if value.suffix.lower() != ".parquet":
            raise ValueError(f"output {str(value)!r} must end in .parquet")
        return value

    @property
    def resolved_report_path(self) -> Path:
        return self.report_path or self.output.with_suffix(".html")


class RunRequest(ParquetRunRequest):
    """One synthesis run of a table.

    `input` is a file path (CSV or Parquet), a SQLAlchemy URL (with `table` naming a table, or a `SELECT` query), or
    `dataset:NAME` for a table shipped inside an installed package (penguins, wine, breast_cancer, diabetes, iris).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = Field(description="file path, SQLAlchemy URL or dataset:NAME")
    output: Path = Field(description="Parquet file to publish")
    table: str | None = Field(None, description="table name or SELECT query for SQL inputs")
    encoding: str | None = Field(None, description="CSV text encoding, e.g. cp1252; default: detected")
    sep: str | None = Field(None, description="CSV field separator (, ; tab |); default: detected")
    model: str = Field(
        "gmm",
        description="a table family of the model registry, or auto (checked before any work); default gmm, or "
        "auto with epsilon",
    )
    rows: int | None = Field(None, gt=0, description="synthetic rows; default: as many as the training split")
    seed: int = Field(0, ge=0)
    thresholds: GateThresholds = Field(default_factory=GateThresholds)
    schema_path: Path | None = Field(None, description="YAML schema or overrides for the inferred schema")
    holdout_fraction: float = Field(0.2, gt=0, lt=0.9)
    target: str | None = Field(None, description="column to measure ML utility on and to balance")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    model_options: dict[str, Any] = Field(default_factory=dict, description="hyperparameters passed to the model")
    conditions: dict[str, Any] | None = Field(None, description="every synthetic row must satisfy col == value")
    balance: str | None = Field(None, description="column whose classes the output equalises")
    rows_per_class: int | None = Field(None, gt=0, description="with balance: rows per class")
    epsilon: float | None = Field(None, gt=0, description="differential-privacy budget (families with a private path)")
    delta: float | None = Field(None, gt=0, lt=1)
    rare_category_k: int | None = Field(None, ge=1, description="categories with fewer rows become one rare bucket")
    text: dict[str, Literal["synthesize", "fake", "drop"]] = Field(
        default_factory=dict, description="free-text column -> action; default: synthesize texts of <= 1000 chars"
    )
    report_path: Path | None = Field(None, description="HTML report; default: beside the output, OUT.html")
    if_exists: Literal["replace", "fail"] = "replace"
    time_budget: float | None = Field(
        None, gt=0, description="--model auto: seconds for all candidates; default scaled to the table"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        """No model named: gmm, or with a budget `auto`, which trains the private family that suits the table's
        size (docs/decisions.md#private-auto) rather than DP-EM."""
        if isinstance(data, dict) and data.get("model") is None:
            data = {**data, "model": "auto" if data.get("epsilon") is not None else "gmm"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RunRequest:
        if self.rows_per_class is not None and self.balance is None:
            raise ValueError("rows_per_class needs balance=COLUMN to say which classes to fill")
        return self

    @classmethod
    def from_sources(cls, config: Path | None = None, **overrides: Any) -> RunRequest:
        """Merge a YAML request file with command-line values (the command line wins) and validate once."""
        data: dict[str, Any] = {}
        if config is not None:
            if not Path(config).exists():
                raise InvalidInputError(f"{config}: request file not found")
            try:
                data = yaml.safe_load(Path(config).read_text()) or {}
            except yaml.YAMLError as exc:
                raise InvalidInputError(f"{config}: not valid YAML: {exc}") from exc
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors())
            where = f"{config}: " if config else ""
            raise InvalidInputError(f"{where}invalid run request: {problems}") from exc
