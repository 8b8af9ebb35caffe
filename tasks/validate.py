"""Validate a table against its schema's Great Expectations suite, and fail early with every problem listed."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.errors import ValidationFailedError, ValidationFailure
from schemas.expectations import FIXES, build_suite
from schemas.table import TableSchema

logger = logging.getLogger(__name__)


def _quiet_gx() -> None:
    # GX logs a line per ephemeral context at INFO, and Prefect's root handler would print it inside every run.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def run_suite(frame: pd.DataFrame, schema: TableSchema, *, columns: list[str] | None = None, complete: bool = False):
    """Run the schema's suite on `frame` in an ephemeral GX context and return GX's validation result."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _quiet_gx()
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        ctx.data_sources.add_pandas("synthgate")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = ctx.suites.add(build_suite(schema, columns=columns))
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(name="synthgate", data=batch, suite=suite))
    result_format: dict[str, Any] = {
        "result_format": "COMPLETE" if complete else "SUMMARY",
        "partial_unexpected_count": 5,
    }
    return definition.run(batch_parameters={"dataframe": frame.reset_index(drop=True)}, result_format=result_format)


def _failure(result: Any) -> ValidationFailure:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("column", "batch_id")}
    out = result.result or {}
    rule = f"{config.type}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    column = config.kwargs.get("column")
    if out.get("unexpected_count") is not None:
        return ValidationFailure(
            column=column,
            rule=rule,
            count=int(out["unexpected_count"]),
            examples=list(out.get("partial_unexpected_list") or [])[:5],
            detail=f"{out.get('unexpected_percent', 0):.2f}% of non-null rows",
            fix=FIXES.get(config.type, ""),
        )
    if "observed_value" in out:
        return ValidationFailure(
            column, rule, detail=f"observed {out['observed_value']!r}", fix=FIXES.get(config.type, "")
        )
    info = result.exception_info or {}
    infos = [info] if "exception_message" in info else list(info.values())
    raised = "; ".join(sorted({str(i.get("exception_message")) for i in infos if i}))
    return ValidationFailure(column, rule, detail=f"could not be checked: {raised}", fix=FIXES.get(config.type, ""))


def validate_table(frame: pd.DataFrame, schema: TableSchema, *, source: str) -> None:
    """Raise `ValidationFailedError` naming the file, column, rule, bad-value count and examples of every failure."""
    result = run_suite(frame, schema)
    failures = [_failure(r) for r in result.results if not r.success]
    if failures:
        raise ValidationFailedError(source, failures)
    logger.info("validate: %s passed %d expectations", source, len(result.results))


def valid_row_share(frame: pd.DataFrame, schema: TableSchema) -> float:
    """Share of rows that break no row-level rule of the suite (table-level failures make every row invalid)."""
    if frame.empty:
        return 0.0
    result = run_suite(frame, schema, columns=list(frame.columns), complete=True)
    bad: set[int] = set()
    for r in result.results:
        if r.success:
            continue
        indices = (r.result or {}).get("unexpected_index_list")
        if indices is None:  # a table- or type-level rule failed: no row passes the whole suite
            return 0.0
        bad.update(int(i) if not isinstance(i, dict) else int(next(iter(i.values()))) for i in indices)
    return 1.0 - len(bad) / len(frame)


validate_table_task = task(name="validate", cache_policy=NO_CACHE)(validate_table)
valid_row_share_task = task(name="schema-validity", cache_policy=NO_CACHE)(valid_row_share)
