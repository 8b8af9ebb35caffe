"""A whole database in a real PostgreSQL through `synthgate database`: keys read from its declared constraints, the
copy written back into another schema with the target's constraints enforced. Skipped without
SYNTHGATE_TEST_POSTGRES_URL (`.ci/run` sets it)."""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.databases import SHOP_DDL, shop_tables

PG_URL = os.environ.get("SYNTHGATE_TEST_POSTGRES_URL")

pytestmark = pytest.mark.skipif(
    not PG_URL, reason="SYNTHGATE_TEST_POSTGRES_URL is not set (run .ci/postgres.sh start, or .ci/run)"
)


def _in_schema(schema: str) -> str:
    """The server's URL with `schema` first on the search path: tables read and written there."""
    return f"{PG_URL}?options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def shop_schemas():
    """A source schema holding the shop with its declared keys, and an empty target schema with the same DDL."""
    engine = sa.create_engine(PG_URL)
    names = [f"shop_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("src", "dst")]
    # 300 customers: the size at which every gate of the shop passes whatever the seed (tests/test_relational.py)
    tables = shop_tables(n_customers=300)
    with engine.begin() as conn:
        for name in names:
            conn.exec_driver_sql(f"CREATE SCHEMA {name}; SET search_path TO {name}")
            conn.exec_driver_sql(SHOP_DDL)
        conn.exec_driver_sql(f"SET search_path TO {names[0]}")
        for name, frame in tables.items():
            frame.to_sql(name, conn, schema=names[0], if_exists="append", index=False)
    yield names
    with engine.begin() as conn:
        for name in names:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
    engine.dispose()


ORPHANS = {  # child rows whose foreign key finds no parent row, per declared relation
    "orders.customer_id": "SELECT count(*) FROM orders o LEFT JOIN customers c ON o.customer_id = c.customer_id "
    "WHERE c.customer_id IS NULL",
    "orders.referred_by": "SELECT count(*) FROM orders o LEFT JOIN customers c ON o.referred_by = c.customer_id "
    "WHERE o.referred_by IS NOT NULL AND c.customer_id IS NULL",
    "order_items.order_id": "SELECT count(*) FROM order_items i LEFT JOIN orders o ON i.order_id = o.order_id "
    "WHERE o.order_id IS NULL",
    "payments.order_id": "SELECT count(*) FROM payments p LEFT JOIN orders o ON p.order_id = o.order_id "
    "WHERE o.order_id IS NULL",
}


@pytest.mark.slow
def test_database_command_copies_a_postgresql_database_from_its_constraints_and_writes_it_back(
    prefect_harness, shop_schemas, tmp_path
):
    from typer.testing import CliRunner

    from synthgate.flows.cli import app
    from synthgate.schemas.errors import InvalidInputError
    from synthgate.tasks.database_write import write_database

    # Arrange
    source, target = (_in_schema(name) for name in shop_schemas)
    out = tmp_path / "out"
    tables = ("customers", "orders", "order_items", "payments")  # parents first

    # Act: the command as a person types it, then a copy that breaks a foreign key written over it
    command = ["database", "--input", source, "--output", str(out), "--write-url", target, "--time-budget", "0"]
    result = CliRunner().invoke(app, command)  # budget 0: auto keeps its first, cheapest candidate
    published = {t: pd.read_parquet(out / f"{t}.parquet") for t in tables}
    broken = {**published, "payments": published["payments"].assign(order_id=-1)}  # no such order
    with pytest.raises(InvalidInputError, match="refused the synthetic rows") as refused:
        write_database(broken, list(tables), target)

    # Assert: every table published and written back, the target's keys declared, enforced and every one holding
    assert result.exit_code == 0, result.output
    assert "PUBLISHED 4 tables" in result.output and "foreign key" in str(refused.value).lower()
    engine = sa.create_engine(target)
    try:
        with engine.connect() as conn:
            for table in tables:
                written = pd.read_sql(f"SELECT * FROM {table}", conn)  # the refused swap left the published copy
                key = written.columns[0]
                assert len(written) == len(published[table]) > 0, table
                assert sorted(written[key]) == sorted(published[table][key]), table
            orphans = {name: conn.exec_driver_sql(sql).scalar() for name, sql in ORPHANS.items()}
            kinds = conn.exec_driver_sql(
                "SELECT constraint_type, count(*) FROM information_schema.table_constraints "
                "WHERE table_schema = current_schema() GROUP BY constraint_type"
            ).all()
            staged = [t for t in sa.inspect(conn).get_table_names() if t.startswith("_synthgate_stage_")]
    finally:
        engine.dispose()
    assert orphans == dict.fromkeys(ORPHANS, 0)  # 100% referential integrity in the target itself
    assert {"PRIMARY KEY": 4, "FOREIGN KEY": 4}.items() <= dict(kinds).items() and staged == []


def test_declared_keys_are_read_from_postgresql_constraints(shop_schemas):
    from synthgate.tasks.relations import check_database, read_database, table_order

    # Act
    db = check_database(read_database(_in_schema(shop_schemas[0])))

    # Assert: keys came from the constraints, none inferred
    order = table_order(db.schema, list(db.tables))
    assert db.schema.primary_key("order_items") == ["item_id"] and order.index("customers") < order.index("orders")
    assert {r.source for r in db.schema.relations} == {"declared"} and len(db.schema.relations) == 4


def test_composite_keys_are_read_from_postgresql_constraints():
    from synthgate.tasks.relations import check_database, read_database
    from tests.databases import LINES_DDL, lines_tables

    # Arrange: order lines keyed by (order_id, line_no), returns referencing that pair
    engine = sa.create_engine(PG_URL)
    name = f"lines_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}; SET search_path TO {name}")
        conn.exec_driver_sql(LINES_DDL)
        for table, frame in lines_tables(n_orders=30).items():
            frame.to_sql(table, conn, schema=name, if_exists="append", index=False)
    try:
        # Act
        db = check_database(read_database(_in_schema(name)))
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        engine.dispose()

    # Assert
    assert db.schema.primary_key("order_lines") == ["order_id", "line_no"]
    rel = next(r for r in db.schema.relations if r.child == "line_returns")
    assert rel.columns == ["order_id", "line_no"] and rel.parent_columns == ["order_id", "line_no"]
    assert rel.source == "declared" and "100.0% of" in rel.evidence
