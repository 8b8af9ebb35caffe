"""Writing a synthetic database back: every table replaced in one transaction, the target's keys enforced."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from synthgate.schemas.errors import InvalidInputError
from synthgate.tasks.database_write import write_database
from tests.databases import shop_sqlite, shop_tables

ORDER = ["customers", "orders", "order_items", "payments"]


def _shifted(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Stand-in synthetic tables: the same shapes with every key moved, so a replaced table is told apart."""
    out = {name: frame.copy() for name, frame in tables.items()}
    out["customers"]["customer_id"] += 10_000
    for column in ("customer_id", "referred_by"):
        out["orders"][column] += 10_000
    for name, column in (("orders", "order_id"), ("order_items", "order_id"), ("payments", "order_id")):
        out[name][column] += 50_000
    return out


def test_every_table_is_replaced_and_the_keys_hold(tmp_path):
    # Arrange
    tables = shop_tables(n_customers=30)
    url = shop_sqlite(tmp_path / "target.db", tables)
    synthetic = _shifted(tables)

    # Act
    write_database(synthetic, ORDER, url)

    # Assert
    with sqlite3.connect(tmp_path / "target.db") as conn:
        for name in ORDER:
            assert conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0] == len(synthetic[name])
        assert conn.execute("SELECT MIN(customer_id) FROM customers").fetchone()[0] > 10_000
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        leftovers = conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '_synthgate_stage_%'").fetchall()
    assert leftovers == []


def test_a_row_the_target_refuses_rolls_every_table_back(tmp_path):
    # Arrange: one order references a customer the synthetic customers lack
    tables = shop_tables(n_customers=30)
    url = shop_sqlite(tmp_path / "target.db", tables)
    synthetic = _shifted(tables)
    synthetic["orders"].loc[0, "customer_id"] = 1

    # Act
    with pytest.raises(InvalidInputError, match="refused the synthetic rows"):
        write_database(synthetic, ORDER, url)

    # Assert: the customers swapped before the failing orders are back as they were
    with sqlite3.connect(tmp_path / "target.db") as conn:
        assert conn.execute("SELECT MIN(customer_id) FROM customers").fetchone()[0] == 1001
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == len(tables["orders"])


@pytest.mark.slow
def test_a_refused_database_run_publishes_no_file_and_leaves_the_target(tmp_path, monkeypatch):
    from synthgate.flows.database import run_database
    from synthgate.schemas.errors import GateRefusedError

    # Arrange: a cardinality no copy can reach
    tables = shop_tables(n_customers=40)
    source = shop_sqlite(tmp_path / "source.db", tables)
    target = shop_sqlite(tmp_path / "target.db", tables)
    monkeypatch.setattr("synthgate.tasks.relational_gates.CARDINALITY_MIN", 1.01)

    # Act
    with pytest.raises(GateRefusedError):
        run_database(source, tmp_path / "out", write_url=target, orchestrate=False)

    # Assert
    assert list((tmp_path / "out").glob("*.parquet")) == []
    assert "REFUSED" in (tmp_path / "out" / "report.html").read_text()
    with sqlite3.connect(tmp_path / "target.db") as conn:
        assert conn.execute("SELECT MIN(customer_id) FROM customers").fetchone()[0] == 1001
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '_synthgate_stage_%'").fetchone() == (
            0,
        )
