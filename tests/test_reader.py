"""The one table reader: CSV as data teams export it (encodings, separators), and messy values read the same way
whole or in batches."""

from __future__ import annotations

import logging
import sqlite3

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from faker import Faker

from synthgate.schemas.errors import InvalidInputError
from synthgate.tasks.dialect import SNIFF_BYTES, detect_encoding, detect_separator, sniff_csv
from synthgate.tasks.ingest import read_table
from synthgate.tasks.scan import scan_table


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    """Western European names, cities and money with cents: the characters cp1252 exports carry."""
    fake = Faker(["fr_FR", "de_DE", "es_ES"])
    Faker.seed(3)
    rng = np.random.default_rng(3)
    n = 150
    frame = pd.DataFrame(
        {
            "name": [fake.name() for _ in range(n)],
            "city": [fake.city() for _ in range(n)],
            "balance": np.round(rng.normal(1200, 300, n), 2),
            "orders": rng.integers(0, 40, n),
        }
    )
    frame.loc[0, "name"] = "José Müller"
    return frame


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "latin-1"])
@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_every_export_dialect_reads_back_the_same_table_whole_and_in_batches(customers, tmp_path, encoding, sep):
    # Arrange
    path = tmp_path / "customers.csv"
    customers.to_csv(path, sep=sep, encoding=encoding, index=False)

    # Act
    whole = read_table(str(path))
    batched = pd.concat(scan_table(str(path), batch_rows=40)).reset_index(drop=True)

    # Assert
    pd.testing.assert_frame_equal(whole, customers)
    pd.testing.assert_frame_equal(batched, customers)


def test_detection_is_logged_and_given_values_win(customers, tmp_path, caplog):
    # Arrange
    path = tmp_path / "export.csv"
    customers.to_csv(path, sep=";", encoding="cp1252", index=False)

    # Act
    with caplog.at_level(logging.INFO, logger="synthgate"):
        detected = sniff_csv(path)
        given = sniff_csv(path, encoding="latin-1", sep="tab")

    # Assert
    assert (detected.encoding, detected.sep) == ("cp1252", ";")
    assert "encoding cp1252 (detected), separator semicolon (detected)" in caplog.text
    assert (given.encoding, given.sep, given.encoding_detected, given.sep_detected) == ("latin-1", "\t", False, False)


def test_separator_sniffing_ignores_separators_inside_quotes_and_decimal_commas():
    assert detect_separator('name;amount\n"Doe, J";12,50\n"Li, K";3,10\n') == ";"
    assert detect_separator('name,notes\n"Doe, J","a; b; c"\n"Li, K","x; y"\n') == ","
    assert detect_separator("value\n1\n2\n") == ","  # one column: nothing to separate


def test_encoding_detection_reads_boms_and_tells_utf8_from_cp1252():
    assert detect_encoding("é".encode("utf-8-sig")) == "utf-8-sig"
    assert detect_encoding("José".encode()[:-1]) == "utf-8"  # a character cut by the prefix is still UTF-8
    assert detect_encoding("José Müller".encode("cp1252")) == "cp1252"
    assert detect_encoding(bytes([0x81, 0x8D])) == "latin-1"  # bytes cp1252 leaves undefined


def test_a_non_utf8_byte_past_the_sniffed_prefix_is_read_whole_and_named_when_batched(tmp_path):
    # Arrange: ASCII for more than the sniffed prefix, then one cp1252 name
    rows = SNIFF_BYTES // 10 + 10
    frame = pd.DataFrame({"name": ["Smith"] * rows + ["José"], "n": np.arange(rows + 1)})
    path = tmp_path / "late.csv"
    frame.to_csv(path, index=False, encoding="cp1252")

    # Act
    whole = read_table(str(path))

    # Assert
    assert whole["name"].iloc[-1] == "José"
    with pytest.raises(InvalidInputError, match="--encoding cp1252"):
        list(scan_table(str(path), batch_rows=50_000))


def test_an_unknown_encoding_or_separator_is_a_clear_input_error(customers, tmp_path):
    path = tmp_path / "c.csv"
    customers.to_csv(path, index=False)
    with pytest.raises(InvalidInputError, match=r"unknown encoding 'klingon'.*cp1252"):
        read_table(str(path), encoding="klingon")
    with pytest.raises(InvalidInputError, match="one character"):
        read_table(str(path), sep=";;")


def test_duplicate_column_names_are_named_in_csv_and_parquet(tmp_path):
    # Arrange
    csv = tmp_path / "dup.csv"
    csv.write_text("id,amount,amount,note\n1,2.5,3.5,x\n2,4.5,5.5,y\n")
    parquet = tmp_path / "dup.parquet"
    pq.write_table(pa.table([[1, 2], [2.5, 4.5], [3.5, 5.5]], names=["id", "amount", "amount"]), parquet)

    # Act / Assert
    for path in (csv, parquet):
        with pytest.raises(InvalidInputError, match=r"duplicate column name\(s\) \['amount'\].*rename"):
            read_table(str(path))


def test_infinite_values_become_missing_with_a_note_naming_column_and_rows(tmp_path, caplog):
    # Arrange
    path = tmp_path / "inf.csv"
    pd.DataFrame({"ratio": [1.0, np.inf, 2.0, -np.inf], "n": [1, 2, 3, 4]}).to_csv(path, index=False)

    # Act
    with caplog.at_level(logging.WARNING, logger="synthgate"):
        frame = read_table(str(path))

    # Assert
    assert frame["ratio"].isna().tolist() == [False, True, False, True]
    assert "column 'ratio' holds 2 infinite value(s) (rows [1, 3])" in caplog.text


def test_mixed_value_types_become_text_and_mixed_numbers_stay_numbers(tmp_path, caplog):
    # Arrange: SQLite keeps each value's own type, so one column can hold numbers and text
    db = tmp_path / "mixed.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (code, amount)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(1, 2), ("B7", 2.5), (3, 4), (None, 1)])

    # Act
    with caplog.at_level(logging.WARNING, logger="synthgate"):
        frame = read_table(f"sqlite:///{db}", table="t")

    # Assert
    assert frame["code"].tolist()[:3] == ["1", "B7", "3"] and pd.isna(frame["code"].iloc[3])
    assert pd.api.types.is_float_dtype(frame["amount"])
    assert "column 'code' mixes value types" in caplog.text and "row 1: 'B7'" in caplog.text


def test_a_mostly_numeric_text_column_says_which_rows_kept_it_text(tmp_path, caplog):
    path = tmp_path / "m.csv"
    pd.DataFrame({"income": [str(v) for v in range(30)] + ["unknown"]}).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="synthgate"):
        frame = read_table(str(path))
    assert pd.api.types.is_string_dtype(frame["income"])
    assert "column 'income' is mostly numbers" in caplog.text and "row 30: 'unknown'" in caplog.text


def test_unicode_and_very_long_column_names_survive_csv_and_parquet(tmp_path):
    names = ["Größe (€) — naïve ✓", "顧客番号", "x" * 300]
    frame = pd.DataFrame({n: [1.5, 2.5, 3.5] for n in names})
    frame.to_csv(tmp_path / "u.csv", index=False)
    frame.to_parquet(tmp_path / "u.parquet")
    assert list(read_table(str(tmp_path / "u.csv")).columns) == names
    assert list(read_table(str(tmp_path / "u.parquet")).columns) == names
