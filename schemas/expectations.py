"""Build a Great Expectations 1.x suite from a `TableSchema`.

The suite is the executable form of the schema: column set, dtypes, nullability, ranges, value sets, uniqueness and a
non-empty table. `great_expectations` is imported lazily because it costs seconds to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from synthgate.schemas.table import ColumnKind, ColumnSchema, TableSchema

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


def column_expectations(col: ColumnSchema) -> list[Any]:
    import great_expectations.expectations as gxe

    out: list[Any] = [gxe.ExpectColumnValuesToBeOfType(column=col.name, type_=gx_type_name(col.dtype))]
    if not col.nullable:
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=col.name))
    text_dates = col.kind == ColumnKind.DATETIME and col.format is not None
    if text_dates:  # GX reads text bounds as dates and refuses to compare them with text: the format is the check
        out.append(gxe.ExpectColumnValuesToMatchStrftimeFormat(column=col.name, strftime_format=col.format))
    ranged = col.kind in (ColumnKind.CONTINUOUS, ColumnKind.INTEGER, ColumnKind.DATETIME) and not text_dates
    if ranged and (col.minimum is not None or col.maximum is not None):
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=col.name, min_value=_bound(col.minimum, col), max_value=_bound(col.maximum, col)
            )
        )
    if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN) and col.categories:
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
        expectations.extend(column_expectations(col))
    return gx.ExpectationSuite(name=f"{schema.name}_schema", expectations=expectations)
