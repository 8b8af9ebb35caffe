"""Write a synthetic database back into a database: every table replaced in one transaction, constraints enforced.

Two steps, as for one table (`tasks.sql`): `stage_database` writes each table into a fresh staging table and commits
(slow; nothing visible changes). `commit_database` then, in one transaction, empties the targets children first and
fills them from the staging tables parents first, so the target's own primary keys, foreign keys and types check
every row; a row that breaks one rolls the whole swap back and every table stays as it was. A target table that does
not exist yet is created by renaming its staging table (it then has no constraints to enforce).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from synthgate.schemas.errors import InvalidInputError
from synthgate.tasks.reader import redact
from synthgate.tasks.sql import StagedTable, discard_staged, make_engine, stage_table

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedDatabase:
    """Committed staging tables, in parent-first order, waiting to be swapped onto their targets."""

    url: str
    tables: list[StagedTable]


def stage_database(tables: dict[str, pd.DataFrame], order: list[str], url: str) -> StagedDatabase:
    """Write every table (in `order`, parents first) into its own staging table; on failure drop what was staged."""
    staged: list[StagedTable] = []
    try:
        for name in order:
            staged.append(stage_table(tables[name], url, name))
    except BaseException:
        for table in staged:
            discard_staged(table)
        raise
    return StagedDatabase(url=url, tables=staged)


def _enforce_foreign_keys(engine) -> None:
    """SQLite checks foreign keys only when each connection asks for it."""
    import sqlalchemy as sa

    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _foreign_keys_on(dbapi_connection, _record):  # pragma: no cover - driver hook
            dbapi_connection.execute("PRAGMA foreign_keys=ON")


def commit_database(staged: StagedDatabase) -> list[str]:
    """Swap every staging table onto its target in one transaction (see the module docstring); returns the tables.

    Raises:
        InvalidInputError: the target refused a row (a key or type constraint); nothing was changed.
    """
    import sqlalchemy as sa

    engine = make_engine(staged.url)
    _enforce_foreign_keys(engine)
    prep = engine.dialect.identifier_preparer
    try:
        existing = set(sa.inspect(engine).get_table_names())
        with engine.begin() as conn:
            for table in reversed(staged.tables):  # children first: their rows reference the parents'
                if table.table in existing:
                    conn.exec_driver_sql(f"DELETE FROM {prep.quote(table.table)}")
            for table in staged.tables:  # parents first
                target, source = prep.quote(table.table), prep.quote(table.staging)
                if table.table not in existing:
                    conn.exec_driver_sql(f"ALTER TABLE {source} RENAME TO {target}")
                    continue
                columns = [c["name"] for c in sa.inspect(conn).get_columns(table.staging)]
                listed = ", ".join(prep.quote(c) for c in columns)
                conn.exec_driver_sql(f"INSERT INTO {target} ({listed}) SELECT {listed} FROM {source}")
                conn.exec_driver_sql(f"DROP TABLE {source}")
    except sa.exc.IntegrityError as exc:
        raise InvalidInputError(
            f"{redact(staged.url)}: the target refused the synthetic rows ({exc.orig}); nothing was changed. Fix: "
            "check that the target's tables and constraints match the source's"
        ) from exc
    except sa.exc.SQLAlchemyError as exc:
        raise InvalidInputError(f"{redact(staged.url)}: writing the synthetic database failed: {exc}") from exc
    finally:
        engine.dispose()
    names = [t.table for t in staged.tables]
    logger.info("database_write url=%s tables=%s", redact(staged.url), names)
    return names


def discard_database(staged: StagedDatabase) -> None:
    """Drop every staging table left after a failure (best effort)."""
    for table in staged.tables:
        discard_staged(table)


def write_database(tables: dict[str, pd.DataFrame], order: list[str], url: str) -> list[str]:
    """Stage, then swap every table in one transaction; staging tables are dropped whatever happens."""
    staged = stage_database(tables, order, url)
    try:
        return commit_database(staged)
    finally:
        discard_database(staged)
