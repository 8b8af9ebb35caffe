"""Ingest from files, SQLite and packaged datasets; validation failures name file, column, rule, count and examples."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from synthgate.schemas.errors import InvalidInputError, ValidationFailedError
from synthgate.schemas.table import infer_schema
from synthgate.tasks.ingest import data_hash, read_table
from synthgate.tasks.validate import valid_row_share, validate_table


def test_csv_parquet_and_sqlite_give_the_same_table(penguins, tmp_path):
    # Arrange
    penguins.to_csv(tmp_path / "p.csv", index=False)
    penguins.to_parquet(tmp_path / "p.parquet")
    url = f"sqlite:///{tmp_path / 'p.db'}"
    engine = sa.create_engine(url)
    penguins.to_sql("penguins", engine, index=False)
    engine.dispose()

    # Act
    from_csv = read_table(str(tmp_path / "p.csv"))
    from_parquet = read_table(str(tmp_path / "p.parquet"))
    from_sql = read_table(url, table="penguins")
    from_query = read_table(url, table="SELECT species, body_mass_g FROM penguins WHERE island = 'Dream'")

    # Assert
    pd.testing.assert_frame_equal(from_parquet, penguins)
    pd.testing.assert_frame_equal(from_csv, penguins)
    pd.testing.assert_frame_equal(from_sql, penguins, check_dtype=False)
    assert (
        list(from_query.columns) == ["species", "body_mass_g"] and len(from_query) == (penguins.island == "Dream").sum()
    )
    assert data_hash(from_csv) == data_hash(penguins)


def test_csv_dates_stay_text_and_infer_as_datetimes_with_their_format(tmp_path):
    # Arrange: a CSV has no types, so the source's dtype for a date column is text
    path = tmp_path / "d.csv"
    path.write_text("day,amount\n2024-01-03,1.5\n2024-02-10,2.0\n2024-03-01,\n")

    # Act
    frame = read_table(str(path))
    day = infer_schema(frame).column("day")

    # Assert: read as the text it is (written back as text), modelled as a datetime
    assert not pd.api.types.is_datetime64_any_dtype(frame["day"])
    assert day.kind == "datetime" and day.format == "%Y-%m-%d"


@pytest.mark.parametrize(
    ("make", "source", "message"),
    [
        (None, "missing.csv", "missing.csv: file not found"),
        (lambda p: p.write_text(""), "empty.csv", "empty.csv: the file is empty"),
        (lambda p: p.write_text("a,b\n"), "header.csv", "the table is empty"),
        (lambda p: p.write_bytes(b"PAR1 not really"), "broken.parquet", "cannot be read as parquet"),
        (lambda p: p.write_text("x"), "data.xlsx", "unknown format '.xlsx'"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, make, source, message):
    path = tmp_path / source
    if make:
        make(path)
    with pytest.raises(InvalidInputError, match=message):
        read_table(str(path))


def test_unknown_sql_table_lists_the_tables(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = sa.create_engine(url)
    pd.DataFrame({"a": [1]}).to_sql("present", engine, index=False)
    engine.dispose()
    with pytest.raises(InvalidInputError, match=r"no table 'absent'; tables are \['present'\]"):
        read_table(url, table="absent")


def test_unknown_dataset_lists_choices():
    with pytest.raises(InvalidInputError, match="penguins"):
        read_table("dataset:nope")


def test_validation_lists_every_failure_with_column_rule_count_and_examples(penguins):
    # Arrange: a contract from clean data, then data that breaks it three ways
    schema = infer_schema(penguins)
    bad = penguins.copy()
    bad.loc[[0, 5], "bill_length_mm"] = 500.0
    bad.loc[3, "species"] = "Emperor"
    bad.loc[7, "island"] = None

    # Act
    with pytest.raises(ValidationFailedError) as info:
        validate_table(bad, schema, source="data/penguins.csv")

    # Assert
    message = str(info.value)
    assert message.startswith("data/penguins.csv: 3 validation rule(s) failed")
    assert "column 'bill_length_mm'" in message and "expect_column_values_to_be_between" in message
    assert "2 bad value(s)" in message and "500.0" in message
    assert "column 'species'" in message and "'Emperor'" in message and "categories" in message
    assert "column 'island'" in message and "not_be_null" in message and "nullable: true" in message
    assert {f.column for f in info.value.failures} == {"bill_length_mm", "species", "island"}


def test_missing_column_fails_the_column_set_rule(penguins):
    schema = infer_schema(penguins)
    with pytest.raises(ValidationFailedError, match="expect_table_columns_to_match_set"):
        validate_table(penguins.drop(columns=["sex"]), schema, source="p.csv")


@pytest.mark.slow
def test_valid_row_share_counts_rows_breaking_any_rule(penguins):
    schema = infer_schema(penguins)
    bad = penguins.copy()
    bad.loc[[0, 5], "bill_length_mm"] = 500.0
    bad.loc[5, "species"] = "Emperor"  # same row twice: counted once
    bad.loc[9, "species"] = "Emperor"
    assert valid_row_share(penguins, schema) == 1.0
    assert valid_row_share(bad, schema) == pytest.approx(1 - 3 / len(bad))
