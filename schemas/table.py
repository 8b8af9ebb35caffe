"""`TableSchema`: what each column of a table is, inferred from data or written by the user.

The schema drives everything downstream (validation, encoding, decoding, PII handling and the report), so it keeps
both the semantic kind of a column (continuous, categorical, ...) and its exact pandas dtype, which decoding restores.
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, model_validator

from synthgate.schemas.constraints import Constraint, check_constraints
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.pii import PIIKind


class ColumnKind(StrEnum):
    """The semantic kind of a column; it picks the encoder and the validation rules."""

    CONTINUOUS = "continuous"
    INTEGER = "integer"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    IDENTIFIER = "identifier"
    TEXT = "text"
    EMPTY = "empty"  # no value at all: not modelled, published empty with its dtype


PIIAction = Literal["drop", "hash", "fake"]

# Integer columns with at most this many distinct values are categorical (years, ratings, flags): their values are a
# set, not a scale, and one-hot encoding keeps them exact.
MAX_INTEGER_LEVELS = 15
# String columns with at most this many distinct values, or a small share of distinct values, are categorical.
MAX_CATEGORY_LEVELS = 100
MAX_CATEGORY_SHARE = 0.5
# Strings longer than this on average are free text, not categories.
TEXT_MEAN_LENGTH = 40

Scalar = bool | int | float | str
# The bucket rare categories are merged into. A column whose `categories` list it accepts every other value too: they
# are folded into it (a domain released under DP lists only the levels common enough to survive the noise).
RARE_LABEL = "__rare__"


def plain_scalar(value: Any) -> Any:
    """numpy/pandas scalars to plain Python, so a schema dumps to YAML and JSON whatever code built it."""
    return value.item() if isinstance(value, np.generic) else value


class ColumnSchema(BaseModel):
    """One column: its kind, dtype, nullability, observed bounds or value set, and PII flag.

    Attributes:
        kind: semantic kind; decides how the column is modelled.
        dtype: the pandas dtype name the column had on ingest and gets back on decode.
        nullable: whether missing values are allowed (and modelled with a missing indicator).
        minimum, maximum: observed (or user-given, public) bounds for numbers and datetimes (ISO strings).
        categories: the allowed value set for categorical and boolean columns.
        decimals: decimal places of the observed values; synthetic values are rounded to it.
        resolution_seconds: for datetimes, the coarsest unit (day, hour, minute, second, ms, us) that every observed
            value is a whole multiple of; synthetic timestamps are rounded to it.
        pii: the kind of personal data, if any; such columns never reach training.
        pii_action: what to do with a PII column in the output: drop it, keyed-hash it, or fill it with fake values.
        format: datetimes held as text: the strftime format they are read with and written back in; identifiers:
            the key format regenerated in the output (`uuid`, `UUID`, `uuid-hex`, or a pattern such as `REF-####`
            where `#` is a digit, `@` an upper-case and `?` a lower-case letter).
        reason: the inference rule that decided the kind, in one line, for the person who checks the schema.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: ColumnKind
    dtype: str
    nullable: bool = False
    minimum: float | str | None = None
    maximum: float | str | None = None
    categories: list[Scalar] | None = None
    decimals: int | None = None
    resolution_seconds: float | None = None
    unique: bool = False
    pii: PIIKind | None = None
    pii_action: PIIAction | None = None
    format: str | None = None
    reason: str | None = None

    @field_serializer("minimum", "maximum", "categories")
    def _plain(self, value: Any) -> Any:
        # `model_copy(update=...)` skips validation, so a numpy scalar put there by a step must still dump.
        return [plain_scalar(v) for v in value] if isinstance(value, list) else plain_scalar(value)

    @model_validator(mode="after")
    def _check(self) -> ColumnSchema:
        if self.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN) and not self.categories:
            raise ValueError(f"column {self.name!r}: kind {self.kind} needs a non-empty 'categories' list")
        numeric = self.kind in (ColumnKind.CONTINUOUS, ColumnKind.INTEGER)
        bounded = isinstance(self.minimum, float | int) and isinstance(self.maximum, float | int)
        if numeric and bounded and self.minimum > self.maximum:
            raise ValueError(f"column {self.name!r}: minimum {self.minimum} is above maximum {self.maximum}")
        return self

    @property
    def is_modelled(self) -> bool:
        """Whether the column goes into the generative model (identifiers, free text, PII and empty columns do not)."""
        return self.pii is None and self.kind not in (ColumnKind.IDENTIFIER, ColumnKind.TEXT, ColumnKind.EMPTY)


class TableSchema(BaseModel):
    """The contract for one table: its columns in order, as inferred or as the user wrote them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "table"
    columns: list[ColumnSchema]
    n_rows: int | None = Field(default=None, description="rows observed when the schema was inferred")
    inferred_from: str | None = Field(
        default=None,
        description="content hash of the rows this schema was inferred from: its bounds and categories describe "
        "those rows, so under differential privacy they are not public knowledge",
    )
    domain_epsilon: float | None = Field(
        default=None,
        ge=0,
        description="the bounds and categories were released under differential privacy at this epsilon "
        "(`synthgate schema infer --epsilon`): public from then on, at that cost",
    )
    domain_delta: float | None = Field(default=None, ge=0, description="the delta of that release")
    constraints: list[Constraint] = Field(
        default_factory=list, description="rules between columns (schemas.constraints)"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> TableSchema:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate column names in schema: {dupes}")
        check_constraints(self.constraints, names)
        return self

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSchema:
        for col in self.columns:
            if col.name == name:
                return col
        raise InvalidInputError(f"column {name!r} is not in the schema; columns are {self.names}")

    @property
    def modelled(self) -> list[ColumnSchema]:
        return [c for c in self.columns if c.is_modelled]

    @property
    def pii_columns(self) -> list[ColumnSchema]:
        return [c for c in self.columns if c.pii is not None]

    # ----------------------------------------------------------------------------------------------- persistence
    def to_yaml(self, path: str | Path | None = None) -> str:
        """Dump to YAML (and write it to `path` when given); the file is meant to be read and edited by people."""
        data = self.model_dump(mode="json", exclude_none=True)
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)  # one reason, one line
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> TableSchema:
        data = _read_yaml(path)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidInputError(f"{path}: not a valid table schema:\n{exc}") from exc

    def with_overrides(self, overrides: dict[str, Any] | str | Path) -> TableSchema:
        """Return a copy where the user's column entries replace the inferred ones, field by field.

        `overrides` is a mapping (or a YAML file of one) with a `columns` list or mapping; a column entry only needs
        the fields it changes, e.g. `{name: zip, kind: categorical}` or `{name: notes, pii: free_text}`.
        """
        data = _read_yaml(overrides) if isinstance(overrides, str | Path) else overrides
        entries = data.get("columns", [])
        if isinstance(entries, dict):
            entries = [{"name": k, **(v or {})} for k, v in entries.items()]
        by_name = {c.name: c for c in self.columns}
        for entry in entries:
            name = entry.get("name")
            if name not in by_name:
                raise InvalidInputError(
                    f"schema override names column {name!r}, which the data does not have; columns are {self.names}"
                )
            merged = {**by_name[name].model_dump(), **entry}
            try:
                by_name[name] = ColumnSchema.model_validate(merged)
            except ValidationError as exc:
                raise InvalidInputError(f"schema override for column {name!r} is invalid:\n{exc}") from exc
        update: dict[str, Any] = {"columns": [by_name[c.name] for c in self.columns]}
        if "constraints" in data:  # the user's list of rules between columns replaces the inferred one
            update["constraints"] = data["constraints"] or []
        try:
            return TableSchema.model_validate({**self.model_dump(), **update})
        except ValidationError as exc:
            raise InvalidInputError(f"schema overrides are invalid:\n{exc}") from exc


def _read_yaml(path: str | Path | dict[str, Any]) -> dict[str, Any]:
    if isinstance(path, dict):
        return path
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT


_INFERENCE_NAMES = ("ColumnProfile", "infer_column", "infer_schema", "profile_schema")


def __getattr__(name: str) -> Any:
    """Inference lives in `schemas.inference` (one rule tree); its entry points stay importable from here."""
    if name in _INFERENCE_NAMES:
        from synthgate.schemas import inference

        return getattr(inference, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
