"""Read a whole table from a file, a SQL database or a dataset shipped inside an installed package."""

from __future__ import annotations

import hashlib
import logging

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.schemas.errors import InvalidInputError
from synthgate.tasks.reader import TableReader, file_format, is_sql_url
from synthgate.tasks.retry import retry_on_transient

__all__ = ["check_width", "data_hash", "file_format", "ingest_table", "is_sql_url", "read_table", "read_table_task"]

logger = logging.getLogger(__name__)

# Validation and the gates grow with columns and column pairs; past this a run would take many minutes, so it is
# refused before any work (docs/decisions.md#wide-tables).
MAX_COLUMNS = 200


def read_table(
    source: str, *, table: str | None = None, encoding: str | None = None, sep: str | None = None
) -> pd.DataFrame:
    """Read `source` (CSV/Parquet path, SQLAlchemy URL, or `dataset:NAME`) into a DataFrame.

    Args:
        source: where the table is.
        table: for SQL, a table name or a SELECT query.
        encoding: CSV text encoding (default: detected: UTF-8, UTF-8 with BOM, cp1252 or latin-1).
        sep: CSV field separator (default: detected among `,` `;` tab `|`).

    Raises:
        InvalidInputError: missing file, unknown format, unreadable content, duplicate column names, unreachable
            database or an empty table; the message names the source and what to do.
    """
    reader = TableReader(source, table=table, encoding=encoding, sep=sep)
    frame = reader.read()
    if frame.empty or frame.shape[1] == 0:
        raise InvalidInputError(
            f"{reader.display}: the table is empty ({frame.shape[0]} rows, {frame.shape[1]} columns); it needs a "
            "header row and at least one data row"
        )
    logger.info("ingest: %s -> %d rows x %d columns", reader.display, *frame.shape)
    return frame


def check_width(n_columns: int, source: str) -> None:
    """Refuse a table too wide to synthesise in reasonable time, saying how to narrow it.

    Raises:
        InvalidInputError: more than `MAX_COLUMNS` columns.
    """
    if n_columns > MAX_COLUMNS:
        raise InvalidInputError(
            f"{source}: {n_columns} columns; one run synthesises at most {MAX_COLUMNS} (validation and the gates "
            "grow with every column and column pair). Fix: keep the columns you need (--table 'SELECT ...' for SQL, "
            "a narrower export for files), or split the table into groups of related columns"
        )


def ingest_table(
    source: str, *, table: str | None = None, encoding: str | None = None, sep: str | None = None
) -> pd.DataFrame:
    """`read_table` for a run: the table must also be narrow enough to synthesise (`check_width`)."""
    frame = read_table(source, table=table, encoding=encoding, sep=sep)
    check_width(frame.shape[1], source)
    return frame


def data_hash(frame: pd.DataFrame) -> str:
    """sha256 of a table's content: column names, dtypes and values (row order matters, the index does not)."""
    digest = hashlib.sha256()
    digest.update(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


read_table_task = task(
    name="ingest", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE
)(ingest_table)
