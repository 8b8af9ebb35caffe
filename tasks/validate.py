"""Validate a table against its schema's Great Expectations suite, and fail early with every problem listed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.schemas import date_parts
from synthgate.schemas.date_parts import DatePart
from synthgate.schemas.errors import ValidationFailedError, ValidationFailure
from synthgate.schemas.expectations import FIXES, build_suite
from synthgate.schemas.table import ColumnKind, TableSchema

logger = logging.getLogger(__name__)


def _quiet_gx() -> None:
    # GX logs a line per ephemeral context at INFO, and Prefect's root handler would print it inside every run.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def _definition(schema: TableSchema, *, columns: list[str] | None = None) -> Any:
    """A GX validation definition for the schema's suite, in a fresh ephemeral context (built once, run per batch)."""
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
    return ctx.validation_definitions.add(gx.ValidationDefinition(name="synthgate", data=batch, suite=suite))


def _run(definition: Any, frame: pd.DataFrame, *, detail: str = "SUMMARY") -> Any:
    result_format: dict[str, Any] = {"result_format": detail, "partial_unexpected_count": 5}
    return definition.run(batch_parameters={"dataframe": frame.reset_index(drop=True)}, result_format=result_format)


def _plain(value: Any) -> Any:
    """numpy scalars (and pairs of them, from the rules between columns) as plain Python, so messages read cleanly."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value.item() if isinstance(value, np.generic) else value


def _failure(result: Any) -> ValidationFailure:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("column", "batch_id")}
    out = result.result or {}
    rule = f"{config.type}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    column = config.kwargs.get("column")
    if (config.meta or {}).get("rule"):  # a rule between columns: name it as the schema writes it, not its pair list
        rule = f"{config.meta['rule']} ({config.type})"
        column = f"{config.kwargs['column_A']}, {config.kwargs['column_B']}"
    if out.get("unexpected_count") is not None:
        return ValidationFailure(
            column=column,
            rule=rule,
            count=int(out["unexpected_count"]),
            examples=[_plain(e) for e in list(out.get("partial_unexpected_list") or [])[:5]],
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


def date_part_failures(
    frame: pd.DataFrame, schema: TableSchema, counts: dict[str, list[Any]] | None = None
) -> list[ValidationFailure]:
    """The schema's date-part rules checked in pandas (GX has no expectation comparing a column with a part of
    another); with `counts`, a batch's broken rows and examples are added there and no failure is returned."""
    found = counts if counts is not None else {}
    for rule in schema.constraints:
        if not isinstance(rule, DatePart) or not all(c in frame.columns for c in rule.columns):
            continue
        bad = date_parts.violations(frame, rule, schema.column(rule.source).format)
        slot = found.setdefault(str(rule), [0, [], rule])
        slot[0] += int(bad.sum())
        pairs = frame.loc[bad, [rule.column, rule.source]].head(5 - len(slot[1]))
        slot[1].extend((_plain(a), _plain(b)) for a, b in pairs.itertuples(index=False, name=None))
    if counts is not None:
        return []
    return date_part_report(found)


def date_part_report(found: dict[str, list[Any]]) -> list[ValidationFailure]:
    """One failure per date-part rule that some rows broke."""
    return [
        ValidationFailure(
            column=f"{rule.column}, {rule.source}",
            rule=f"{name} (date part, checked in pandas)",
            count=count,
            examples=examples,
            detail=f"{count} rows where {rule.column} is not the {rule.part} of {rule.source}",
            fix=(
                f"correct those rows, or delete the date-part rule on {rule.column!r} from the schema's `constraints` "
                "if it need not hold"
            ),
        )
        for name, (count, examples, rule) in found.items()
        if count
    ]


def validate_table(frame: pd.DataFrame, schema: TableSchema, *, source: str) -> None:
    """Raise `ValidationFailedError` naming the file, column, rule, bad-value count and examples of every failure.

    The suite first runs for pass or fail only (GX then skips the metrics behind counts and examples, 40% of a
    run's validation time on small tables); only a table that fails runs again for the details its message names.
    """
    definition = _definition(schema)
    result = _run(definition, frame, detail="BOOLEAN_ONLY")
    if not result.success:
        result = _run(definition, frame)
    failures = [_failure(r) for r in result.results if not r.success] + date_part_failures(frame, schema)
    if failures:
        raise ValidationFailedError(source, failures)
    logger.info("validate: %s passed %d expectations", source, len(result.results))


def valid_row_share(frame: pd.DataFrame, schema: TableSchema) -> float:
    """Share of rows that break no row-level rule of the suite (table-level failures make every row invalid)."""
    if frame.empty:
        return 0.0
    # Pass or fail first: the row indices of a COMPLETE result cost more than the checks, and are needed only when
    # some expectation failed.
    definition = _definition(schema, columns=list(frame.columns))
    result = _run(definition, frame, detail="BOOLEAN_ONLY")
    if not result.success:
        result = _run(definition, frame, detail="COMPLETE")
    bad: set[int] = set()
    for r in result.results:
        if r.success:
            continue
        indices = (r.result or {}).get("unexpected_index_list")
        if indices is None:  # a table- or type-level rule failed: no row passes the whole suite
            return 0.0
        bad.update(int(i) if not isinstance(i, dict) else int(next(iter(i.values()))) for i in indices)
    for rule in schema.constraints:  # date parts are checked in pandas, outside the suite
        if isinstance(rule, DatePart) and all(c in frame.columns for c in rule.columns):
            broken = date_parts.violations(frame, rule, schema.column(rule.source).format)
            bad.update(int(i) for i in frame.index[broken])
    return 1.0 - len(bad) / len(frame)


class BatchValidator:
    """Run the schema's suite batch by batch and raise one `ValidationFailedError` for the whole table at the end.

    Per expectation the batches' results are merged: unexpected counts add up, the percentage is recomputed over all
    non-null rows, examples are the first five in table order, and a table-level observation is the first failing
    batch's. Uniqueness cannot be judged within a batch, so for identifier columns the validator keeps 64-bit hashes
    of the values (8 bytes a row) and judges duplicates across the whole table; its examples are the duplicated values
    in the order their second occurrence was read.
    """

    def __init__(self, schema: TableSchema, *, source: str):
        self.schema, self.source = schema, source
        self._definition = _definition(schema)
        self._merged: list[dict[str, Any]] | None = None
        self._unique_hashes: dict[str, list[np.ndarray]] = {
            c.name: [] for c in schema.columns if c.kind == ColumnKind.IDENTIFIER and c.unique
        }
        self._duplicates: dict[str, list[Any]] = {name: [] for name in self._unique_hashes}
        self._seen: dict[str, np.ndarray] = {name: np.empty(0, dtype=np.uint64) for name in self._unique_hashes}
        self._date_parts: dict[str, list[Any]] = {}

    def add(self, batch: pd.DataFrame) -> None:
        results = _run(self._definition, batch).results
        if self._merged is None:
            self._merged = [
                {"config": r.expectation_config, "success": True, "result": {}, "info": None} for r in results
            ]
        for slot, r in zip(self._merged, results, strict=True):
            out = r.result or {}
            if out.get("element_count") is not None:  # the percentage is over the non-null rows of every batch
                slot["non_null"] = slot.get("non_null", 0) + out["element_count"] - (out.get("missing_count") or 0)
            if not r.success:
                _merge_result(slot, r)
        for name in self._unique_hashes:
            self._track_unique(name, batch[name])
        date_part_failures(batch, self.schema, self._date_parts)

    def _track_unique(self, name: str, series: pd.Series) -> None:
        values = series.dropna()
        hashes = pd.util.hash_array(values.to_numpy())
        seen = self._seen[name]
        _, first = np.unique(hashes, return_index=True)
        repeated = np.ones(len(hashes), dtype=bool)
        repeated[first] = False  # a repeat within the batch ...
        pos = np.searchsorted(seen, hashes).clip(max=max(len(seen) - 1, 0))
        repeated |= (seen[pos] == hashes) if len(seen) else False  # ... or of an earlier batch
        examples = self._duplicates[name]
        if repeated.any() and len(examples) < 5:
            examples.extend(v for v in values[repeated].unique().tolist()[: 5 - len(examples)] if v not in examples)
        self._unique_hashes[name].append(hashes)
        self._seen[name] = np.union1d(seen, hashes)

    def finish(self) -> None:
        """Raise `ValidationFailedError` when any batch failed any rule; log the pass otherwise."""
        if self._merged is None:
            raise ValidationFailedError(self.source, [ValidationFailure(None, "rows", detail="the table has no rows")])
        failures = []
        for slot in self._merged:
            config = slot["config"]
            column = config.kwargs.get("column")
            if config.type == "expect_column_values_to_be_unique" and column in self._unique_hashes:
                self._judge_unique(slot, column)
            if "unexpected_count" in slot["result"] and slot.get("non_null"):
                slot["result"]["unexpected_percent"] = 100.0 * slot["result"]["unexpected_count"] / slot["non_null"]
            if not slot["success"]:
                failures.append(_failure(_Merged(config, slot["result"], slot["info"])))
        failures += date_part_report(self._date_parts)
        if failures:
            raise ValidationFailedError(self.source, failures)
        logger.info("validate: %s passed %d expectations", self.source, len(self._merged))

    def _judge_unique(self, slot: dict[str, Any], column: str) -> None:
        hashes = np.concatenate(self._unique_hashes[column]) if self._unique_hashes[column] else np.empty(0, np.uint64)
        _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
        bad = int((counts[inverse] > 1).sum())  # GX counts every row of a duplicated value
        non_null = len(hashes)
        slot["success"] = bad == 0
        slot["result"] = {
            "unexpected_count": bad,
            "unexpected_percent": 100.0 * bad / max(non_null, 1),
            "partial_unexpected_list": self._duplicates[column][:5],
        }


@dataclass
class _Merged:
    """The attributes of a GX result that `_failure` reads, for results merged over batches."""

    expectation_config: Any
    result: dict[str, Any]
    exception_info: Any
    success: bool = False


def _merge_result(slot: dict[str, Any], r: Any) -> None:
    slot["success"] = False
    out, acc = r.result or {}, slot["result"]
    if out.get("unexpected_count") is not None:
        acc["unexpected_count"] = acc.get("unexpected_count", 0) + int(out["unexpected_count"])
        acc["unexpected_percent"] = out.get("unexpected_percent", 0)  # recomputed over all batches in `finish`
        acc["partial_unexpected_list"] = (
            list(acc.get("partial_unexpected_list") or []) + list(out.get("partial_unexpected_list") or [])
        )[:5]
    elif "observed_value" in out and "observed_value" not in acc:
        acc["observed_value"] = out["observed_value"]
    elif slot["info"] is None and not acc:
        slot["info"] = r.exception_info


validate_table_task = task(name="validate", cache_policy=NO_CACHE)(validate_table)
valid_row_share_task = task(name="schema-validity", cache_policy=NO_CACHE)(valid_row_share)
