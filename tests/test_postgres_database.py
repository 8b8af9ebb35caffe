"""A whole database in a real PostgreSQL: keys read from its declared constraints, the copy written back into another
schema with the target's constraints enforced. Skipped without SYNTHGATE_TEST_POSTGRES_URL (`.ci/run` sets it)."""

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
    tables = shop_tables(n_customers=80)
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


@pytest.mark.slow
def test_a_postgresql_database_is_copied_from_its_constraints_and_written_back(shop_schemas):
    from synthgate.schemas.errors import InvalidInputError
    from synthgate.tasks.database_write import write_database
    from synthgate.tasks.relational import synthesize_database
    from synthgate.tasks.relational_gates import integrity
    from synthgate.tasks.relations import check_database, read_database, table_order

    # Arrange
    source, target = (_in_schema(name) for name in shop_schemas)
    db = check_database(read_database(source))
    syn = synthesize_database(db, seed=0)
    order = table_order(db.schema, list(syn.tables))
    broken = {**syn.tables, "payments": syn.tables["payments"].assign(order_id=-1)}  # no such order

    # Act: the write-back `synthgate database --write-url` makes once every gate passed
    write_database(syn.tables, order, target)
    with pytest.raises(InvalidInputError, match="refused the synthetic rows") as refused:
        write_database(broken, order, target)

    # Assert: keys came from the constraints; the target holds the copy, its constraints intact and enforced
    assert db.schema.primary_key("order_items") == ["item_id"] and order.index("customers") < order.index("orders")
    assert {r.source for r in db.schema.relations} == {"declared"} and len(db.schema.relations) == 4
    assert integrity(syn)[0] == 1.0 and "foreign key" in str(refused.value).lower()
    engine = sa.create_engine(target)
    try:
        with engine.connect() as conn:
            for table in ("customers", "orders", "order_items", "payments"):
                written = pd.read_sql(f"SELECT * FROM {table}", conn)  # the refused swap left the first copy
                assert len(written) == len(syn.tables[table]) > 0, table
            constraints = conn.exec_driver_sql(
                "SELECT count(*) FROM information_schema.table_constraints "
                "WHERE constraint_type = 'FOREIGN KEY' AND table_schema = current_schema()"
            ).scalar()
            staged = [t for t in sa.inspect(conn).get_table_names() if t.startswith("_synthgate_stage_")]
    finally:
        engine.dispose()
    assert constraints == 4 and staged == []


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
