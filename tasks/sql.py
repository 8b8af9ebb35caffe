"""Write a synthetic table back into a database, atomically: readers see the old table or the new one, never half.

Two steps, so that the database and the Parquet file are published together:

1. `stage_table` writes the rows into a fresh staging table (`_synthgate_stage_<id>`) and commits it. This is the slow
   part, and if it fails nothing visible has changed (the staging table is dropped).
2. `commit_staged` drops the target and renames the staging table onto it **in one transaction** (DDL is
   transactional in PostgreSQL and SQLite), so the swap is all-or-nothing. `discard_staged` drops the staging table
   when something in between failed (e.g. the Parquet write).

SQLite note: Python's sqlite3 driver does not open a transaction before DDL, so `CREATE`/`DROP`/`ALTER` would each
commit on their own. For SQLite engines we take over transaction control (SQLAlchemy's documented recipe: driver
autocommit plus an explicit `BEGIN`), which makes the swap one transaction there too.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.schemas.errors import InvalidInputError
from synthgate.tasks.reader import is_sql_url, redact
from synthgate.tasks.retry import retry_on_transient

if TYPE_CHECKING:  # loaded when a database is written: a run from a file should not pay its import
    import sqlalchemy as sa

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
STAGE_PREFIX = "_synthgate_stage_"


@dataclass(frozen=True)
class StagedTable:
    """A committed staging table waiting to be swapped onto `table`."""

    url: str
    table: str
    schema: str | None
    staging: str


def split_table_name(name: str) -> tuple[str | None, str]:
    """`"analytics.customers"` -> ("analytics", "customers"); plain identifiers only (no quoting games)."""
    parts = name.split(".")
    if len(parts) > 2 or not all(_NAME.match(p) for p in parts):
        raise InvalidInputError(
            f"--write-table {name!r}: give a plain table name (letters, digits, underscores), optionally SCHEMA.TABLE"
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def make_engine(url: str) -> sa.Engine:
    """An engine whose transactions really cover DDL (see the module docstring for SQLite)."""
    import sqlalchemy as sa

    if not is_sql_url(url):
        raise InvalidInputError(f"--write-url {url!r}: not a SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db)")
    try:
        engine = sa.create_engine(url)
    except Exception as exc:  # unknown driver, malformed URL
        raise InvalidInputError(f"{redact(url)}: not a usable SQLAlchemy URL ({exc})") from exc
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _no_driver_transactions(dbapi_connection, _record):  # pragma: no cover - driver hook
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _explicit_begin(conn):  # pragma: no cover - driver hook
            conn.exec_driver_sql("BEGIN")

    return engine


def _unreachable(url: str, exc: sa.exc.OperationalError) -> InvalidInputError:
    return InvalidInputError(
        f"{redact(url)}: cannot write to the database ({exc.orig}); check the host, port, credentials, that the "
        "server is running and that this user may create tables"
    )


def stage_table(frame: pd.DataFrame, url: str, table: str) -> StagedTable:
    """Write `frame` into a new staging table beside `table` and commit it; the target is not touched yet."""
    import sqlalchemy as sa

    schema, name = split_table_name(table)
    staging = f"{STAGE_PREFIX}{uuid.uuid4().hex[:12]}"
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            frame.to_sql(staging, conn, schema=schema, index=False, chunksize=10_000)
    except sa.exc.OperationalError as exc:
        raise _unreachable(url, exc) from exc
    except sa.exc.SQLAlchemyError as exc:
        raise InvalidInputError(f"{redact(url)}: writing the synthetic rows failed: {exc}") from exc
    finally:
        engine.dispose()
    logger.info("sql_stage url=%s table=%s staging=%s rows=%d", redact(url), table, staging, len(frame))
    return StagedTable(url=url, table=name, schema=schema, staging=staging)


def commit_staged(staged: StagedTable) -> str:
    """Replace the target with the staging table in one transaction. Returns the target's name."""
    import sqlalchemy as sa

    engine = make_engine(staged.url)
    prep = engine.dialect.identifier_preparer
    qualify = (prep.quote_schema(staged.schema) + ".") if staged.schema else ""
    target, staging = prep.quote(staged.table), prep.quote(staged.staging)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {qualify}{target}")
            # ALTER TABLE ... RENAME TO takes an unqualified new name in both PostgreSQL and SQLite
            conn.exec_driver_sql(f"ALTER TABLE {qualify}{staging} RENAME TO {target}")
    except sa.exc.OperationalError as exc:
        raise _unreachable(staged.url, exc) from exc
    except sa.exc.SQLAlchemyError as exc:
        raise InvalidInputError(f"{redact(staged.url)}: replacing table {staged.table!r} failed: {exc}") from exc
    finally:
        engine.dispose()
    logger.info("sql_publish url=%s table=%s%s", redact(staged.url), qualify, staged.table)
    return staged.table


def discard_staged(staged: StagedTable) -> None:
    """Drop a staging table after a failure; best effort (a leftover `_synthgate_stage_*` table is harmless)."""
    import sqlalchemy as sa

    engine = make_engine(staged.url)
    prep = engine.dialect.identifier_preparer
    qualify = (prep.quote_schema(staged.schema) + ".") if staged.schema else ""
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {qualify}{prep.quote(staged.staging)}")
    except sa.exc.SQLAlchemyError as exc:
        logger.warning("sql_discard_failed staging=%s error=%r", staged.staging, exc)
    finally:
        engine.dispose()


def write_table(frame: pd.DataFrame, url: str, table: str) -> str:
    """Stage and swap in one call, for callers that publish only to the database."""
    staged = stage_table(frame, url, table)
    try:
        return commit_staged(staged)
    except BaseException:
        discard_staged(staged)
        raise


# Both steps talk to the database: retried on transient errors only, never cached.
_DATABASE_STEP = {"retries": 2, "retry_delay_seconds": [1, 5], "retry_condition_fn": retry_on_transient}
stage_table_task = task(name="stage-sql-table", cache_policy=NO_CACHE, **_DATABASE_STEP)(stage_table)
commit_staged_task = task(name="publish-sql-table", cache_policy=NO_CACHE, **_DATABASE_STEP)(commit_staged)
