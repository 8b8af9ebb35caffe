"""Resolve the schema a run uses and encode the training rows for the model."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import ValidationError
from torch import Tensor

from synthgate.models.encoders.table import Normalization, TableEncoder
from synthgate.schemas.constraints import discover_constraints
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.table import TableSchema, _read_yaml, infer_schema
from synthgate.tasks.protect import training_frame

logger = logging.getLogger(__name__)


def resolve_schema(frame: pd.DataFrame, *, name: str, schema_path: Path | None = None) -> TableSchema:
    """Infer the schema; a user file is either a complete schema (a contract to validate against) or overrides."""
    inferred = infer_schema(frame, name=name)
    if schema_path is None:
        return inferred
    data = _read_yaml(schema_path)
    try:
        contract = TableSchema.model_validate(data)
    except ValidationError:
        schema = inferred.with_overrides(data)
        if "constraints" not in data:  # overridden kinds (text -> datetime) may reveal rules: look again
            schema = schema.model_copy(update={"constraints": discover_constraints(frame, schema.columns)})
        return schema
    logger.info("schema: using %s as the contract", schema_path)
    return contract


def is_contract(schema_path: Path | None) -> bool:
    """Whether a user's schema file is a complete contract (its domain is the user's) rather than overrides of a
    schema inferred from the rows (whose bounds and categories then describe the private data)."""
    if schema_path is None:
        return False
    try:
        TableSchema.model_validate(_read_yaml(schema_path))
    except ValidationError:
        return False
    return True


def encode_training(
    train: pd.DataFrame, schema: TableSchema, *, normalization: Normalization = "standard"
) -> tuple[TableEncoder, Tensor]:
    """Fit the encoder on the training split only (the holdout must not shape the model) and encode it."""
    frame = training_frame(train, schema)
    if frame.shape[1] == 0:
        raise InvalidInputError(
            f"table {schema.name!r} has no column to model: every column is an identifier, free text or PII; "
            "override a column's kind or pii flag in a schema file"
        )
    encoder = TableEncoder(schema, normalization=normalization)
    encoded = encoder.fit_transform(frame)
    logger.info("preprocess: %d rows -> %d encoded features (%s)", len(frame), encoded.shape[1], normalization)
    return encoder, encoded


resolve_schema_task = task(name="resolve-schema", cache_policy=NO_CACHE)(resolve_schema)
encode_training_task = task(name="encode", cache_policy=NO_CACHE)(encode_training)
