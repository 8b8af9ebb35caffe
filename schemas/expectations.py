"""Build a Great Expectations 1.x suite from a `TableSchema`.

The suite is the executable form of the schema: column set, dtypes, nullability, ranges, value sets, uniqueness and a
non-empty table. `great_expectations` is imported lazily because it costs seconds to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from synthgate.schemas.constraints import FixedCombination, Inequality, Rule, value_key
from synthgate.schemas.date_parts import DatePart
from synthgate.schemas.table import RARE_LABEL, ColumnKind, ColumnSchema, TableSchema

if TYPE_CHECKING:
    import great_expectations as gx

# What to tell the user for each rule, keyed by expectation type.
FIXES = {
    "expect_table_row_count_to_be_between": "provide a table with at least one row",
    "expect_table_columns_to_match_set": "make the data's columns match the schema, or update the schema file",
    "expect_column_values_to_be_of_type": "convert the column to the schema's dtype, or change its dtype in the schema",
    "expect_column_values_to_not_be_null": "fill or drop the missing values, or set `nullable: true` for the column",
    "expect_column_values_to_be_between": "correct or remove those rows, or widen minimum/maximum in the schema",
    "expect_column_values_to_be_in_set": "correct those values, or add them to the column's `categories` in the schema",
    "expect_column_values_to_be_unique": "remove duplicate rows, or change the column's kind from identifier",
    "expect_column_pair_values_a_to_be_greater_than_b": (
        "correct those rows, or delete the inequality from the schema's `constraints` if it need not hold"
    ),
    "expect_column_pair_values_to_be_in_set": (
        "correct those rows, or add the combination to the rule's `mapping` (or delete the rule) in the schema"
    ),
    "expect_column_values_to_match_strftime_format": "write every date in the column's format, or correct `format`",
}


def gx_type_name(dtype: str) -> str:
    """The type name GX's `ExpectColumnValuesToBeOfType` accepts for a pandas dtype on pandas 2 and 3 alike."""
    if dtype in ("str", "object", "string") or dtype.startswith("string"):
        return "str"
    if dtype == "category":
        return "CategoricalDtypeType"
    if dtype.startswith("datetime64"):
        return "datetime64[ns]"
    if dtype in ("Int64", "Int32", "Int16", "Int8"):
        return dtype.lower()
    if dtype == "boolean":
        return "bool"
    return dtype


def _bound(value: float | str | None, col: ColumnSchema) -> Any:
    if value is None:
        return None
    if col.kind == ColumnKind.DATETIME:
        return pd.Timestamp(value)
    return value


def column_expectations(col: ColumnSchema, *, bounds: bool = True) -> list[Any]:
    """One column's checks; without `bounds` its range is not checked (a DP range clips values, never refuses them)."""
    import great_expectations.expectations as gxe

    out: list[Any] = [gxe.ExpectColumnValuesToBeOfType(column=col.name, type_=gx_type_name(col.dtype))]
    if not col.nullable:
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=col.name))
    text_dates = col.kind == ColumnKind.DATETIME and col.format is not None
    if text_dates:  # GX reads text bounds as dates and refuses to compare them with text: the format is the check
        out.append(gxe.ExpectColumnValuesToMatchStrftimeFormat(column=col.name, strftime_format=col.format))
    ranged = col.kind in (ColumnKind.CONTINUOUS, ColumnKind.INTEGER, ColumnKind.DATETIME) and not text_dates
    if bounds and ranged and (col.minimum is not None or col.maximum is not None):
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=col.name, min_value=_bound(col.minimum, col), max_value=_bound(col.maximum, col)
            )
        )
    if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN) and col.categories and RARE_LABEL not in col.categories:
        out.append(gxe.ExpectColumnValuesToBeInSet(column=col.name, value_set=list(col.categories)))
    if col.kind == ColumnKind.IDENTIFIER and col.unique:
        out.append(gxe.ExpectColumnValuesToBeUnique(column=col.name))
    return out


def build_suite(schema: TableSchema, *, columns: list[str] | None = None) -> gx.ExpectationSuite:
    """The schema's suite; `columns` limits it to a subset (synthetic output omits dropped PII columns)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    cols = [c for c in schema.columns if columns is None or c.name in columns]
    expectations: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectTableColumnsToMatchSet(column_set=[c.name for c in cols], exact_match=True),
    ]
    for col in cols:
        expectations.extend(column_expectations(col, bounds=schema.domain_epsilon is None))
    names = {c.name for c in cols}
    for rule in schema.constraints:
        if all(c in names for c in rule.columns):
            expectations.extend(constraint_expectations(rule, schema))
    return gx.ExpectationSuite(name=f"{schema.name}_schema", expectations=expectations)


def constraint_expectations(rule: Rule, schema: TableSchema) -> list[Any]:
    """The row-level check of one rule between columns; rows with a null side are not judged (the rule leaves them open).

    Text dates are compared as text: discovery keeps a date rule only when that agrees with comparing the times.
    A date part has no GX expectation (none compares a column with a function of another); `tasks.validate` checks
    it in pandas and reports it beside the suite's failures.
    """
    if isinstance(rule, DatePart):
        return []
    import great_expectations.expectations as gxe

    meta = {"rule": str(rule)}
    if isinstance(rule, Inequality):
        return [
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=rule.high,
                column_B=rule.low,
                or_equal=not rule.strict,
                ignore_row_if="either_value_is_missing",
                meta=meta,
            )
        ]
    if rule.mapping is None:  # a hand-added rule without its combinations: learned at training, not checkable here
        return []
    pairs = _allowed_pairs(rule, schema)
    return [
        gxe.ExpectColumnPairValuesToBeInSet(
            column_A=rule.determinant,
            column_B=rule.dependent,
            value_pairs_set=pairs,
            ignore_row_if="either_value_is_missing",
            meta=meta,
        )
    ]


def _allowed_pairs(rule: FixedCombination, schema: TableSchema) -> list[tuple[Any, Any]]:
    """The mapping's pairs, with keys turned back into the column's values; a determining category the mapping does
    not name (the rare-category bucket, a level added by hand) may go with any dependent category."""
    x_col, y_col = schema.column(rule.determinant), schema.column(rule.dependent)
    x_values = {value_key(v): v for v in x_col.categories or []}
    mapping = rule.mapping or {}
    pairs = [(x_values.get(k, k), v) for k, v in mapping.items()]
    free = [v for k, v in x_values.items() if k not in mapping]
    pairs += [(x, y) for x in free for y in y_col.categories or []]
    return pairs
