"""Keys of several columns end to end, and the database privacy gates on per-table holdouts."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from synthgate.schemas.date_parts import discover_date_parts
from synthgate.schemas.date_parts import violations as date_part_violations
from synthgate.schemas.inference import infer_column
from synthgate.schemas.relations import DatabaseSchema
from synthgate.tasks.relations import Database, check_database, read_database
from tests.databases import WEATHER_RELATIONS, lines_sqlite, lines_tables, shop_tables, weather_tables

TIME_HOUR_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@pytest.mark.slow
def test_declared_composite_keys_are_copied_unique_numbered_and_written_back(tmp_path):
    from synthgate.tasks.database_write import write_database
    from synthgate.tasks.relational import synthesize_database
    from synthgate.tasks.relational_gates import cardinality_shape, integrity, key_uniqueness

    # Arrange: order lines keyed by (order_id, line_no), returns referencing that pair, both declared in SQLite
    real = lines_tables(n_orders=100)
    db = read_database(lines_sqlite(tmp_path / "lines.db", real))
    target = lines_sqlite(tmp_path / "target.db", real)

    # Act
    # budget 0: auto keeps its first, cheapest candidate, whatever the machine's speed
    syn = synthesize_database(check_database(db), seed=0, time_budget=0.0)
    write_database(syn.tables, ["orders", "order_lines", "line_returns"], target)

    # Assert
    assert db.schema.primary_key("order_lines") == ["order_id", "line_no"]
    assert "line_returns.order_id+line_no -> order_lines.order_id+line_no" in {r.name for r in db.schema.relations}
    assert integrity(syn)[0] == 1.0 and key_uniqueness(syn)[0] == 1.0
    lines = syn.tables["order_lines"]
    numbered = lines.groupby("order_id")["line_no"].apply(lambda v: sorted(v) == list(range(1, len(v) + 1)))
    assert numbered.all()  # every order's lines are 1..k, as in the source
    assert not lines["order_id"].isin(real["orders"]["order_id"]).any()  # the tuples are never real ones
    for rel in db.schema.relations:
        assert cardinality_shape(rel, syn.real, syn.tables) >= 0.85, rel.name
    with sqlite3.connect(tmp_path / "target.db") as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []  # the composite FOREIGN KEY holds
        assert conn.execute("SELECT count(*) FROM line_returns").fetchone()[0] == len(syn.tables["line_returns"])


@pytest.mark.slow
def test_flights_keep_their_weather_hour_and_its_origin_airport():
    from synthgate.tasks.relational import synthesize_database
    from synthgate.tasks.relational_gates import cardinality_shape, integrity, key_uniqueness

    # Arrange: weather keyed by (origin, time_hour), origin -> airports; flights -> weather and -> airports
    schema = DatabaseSchema.model_validate(WEATHER_RELATIONS)
    db = check_database(Database(tables=weather_tables(days=4, n_flights=300), schema=schema, source="nycflights13"))

    # Act
    # budget 0: auto keeps its first, cheapest candidate, whatever the machine's speed
    syn = synthesize_database(db, seed=0, time_budget=0.0)
    flights, weather = syn.tables["flights"], syn.tables["weather"]

    # Assert
    assert integrity(syn)[0] == 1.0 and key_uniqueness(syn)[0] == 1.0
    assert weather["time_hour"].str.fullmatch(r"2013-01-0[1-5]T\d\d:00:00Z").all()  # on the hour, in the format
    sizes = [sorted(t["weather"].groupby("origin").size()) for t in (syn.real, syn.tables)]
    assert sizes[0] == sizes[1]  # three stations, as many hours each as the real ones
    linked = flights.merge(weather, on=["origin", "time_hour"], how="inner", suffixes=("", ".w"))
    assert len(linked) == flights["time_hour"].notna().sum()  # a flight with an hour is at its station's hour
    assert flights["time_hour"].isna().sum() == syn.real["flights"]["time_hour"].isna().sum()  # orphans read missing
    for rel in db.schema.relations:
        assert cardinality_shape(rel, syn.real, syn.tables) >= 0.85, rel.name
    for table in ("weather", "flights"):  # year/month/day/hour follow the (moved or copied) time_hour on every row
        real = syn.real[table]
        rules = discover_date_parts(real, [infer_column(c, real[c]) for c in real.columns])
        assert {r.column for r in rules} >= {"day", "hour"}, table  # month is one value in four days
        for rule in rules:
            assert not date_part_violations(syn.tables[table], rule, TIME_HOUR_FORMAT).any(), (table, rule)


class Copier:
    """A "model" that returns its training rows: what the privacy gates are there to refuse."""

    model_name_ = "copier"

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame.reset_index(drop=True)

    def sample(self, n: int, conditions: dict | None = None, *, seed: int | None = None) -> pd.DataFrame:
        rows = self.frame
        for column, value in (conditions or {}).items():
            rows = (
                rows[rows[column].astype(str) == str(value)] if (rows[column].astype(str) == str(value)).any() else rows
            )
        return rows.sample(n, replace=True, random_state=seed).reset_index(drop=True)


@pytest.mark.slow
def test_a_database_of_copied_rows_is_refused_by_its_privacy_gates(monkeypatch):
    import synthgate.tasks.relational as relational
    from synthgate.schemas.gates import GateResult
    from synthgate.tasks.relational_gates import privacy_metrics

    # Arrange: every table's model hands back its training rows
    monkeypatch.setattr(relational, "_fit_model", lambda frame, **_: Copier(frame))
    db = check_database(read_database_from(shop_tables(n_customers=120)))

    # Act
    # budget 0: auto keeps its first, cheapest candidate, whatever the machine's speed
    syn = relational.synthesize_database(db, seed=0, time_budget=0.0)

    gates = GateResult(metrics=privacy_metrics(syn))

    # Assert: each table with more than a few coarse columns, and every join, is caught
    refused = {m.name for m in gates.metrics if m.group == "privacy" and m.passed is False}
    assert not gates.passed
    for table in ("orders", "order_items", "payments"):
        assert {f"exact-match ratio: {table}", f"DCR share excess: {table}"} <= refused, table
    assert {f"exact-match ratio: {r.name}" for r in db.schema.relations} <= refused
    # customers' modelled columns (segment, country, year; names are faked) repeat in fresh rows 70% of the time:
    # a copy of them is no more telling than fresh data, and the gate says so
    assert "exact-match ratio: customers" not in refused


def read_database_from(tables: dict[str, pd.DataFrame]) -> Database:
    """The shop's tables with its keys, without a file."""
    from synthgate.schemas.relations import Relation, TableKeys

    keys = {"customers": "customer_id", "orders": "order_id", "order_items": "item_id", "payments": "payment_id"}
    relations = [
        Relation(child="orders", columns=["customer_id"], parent="customers", parent_columns=["customer_id"]),
        Relation(child="order_items", columns=["order_id"], parent="orders", parent_columns=["order_id"]),
        Relation(child="payments", columns=["order_id"], parent="orders", parent_columns=["order_id"]),
    ]
    schema = DatabaseSchema(tables={t: TableKeys(primary_key=[k]) for t, k in keys.items()}, relations=relations)
    return Database(tables=tables, schema=schema, source="shop")


def test_small_tables_keep_every_row_and_larger_ones_hold_a_fifth_out():
    from synthgate.tasks.relational import holdout_rows

    held = holdout_rows(500, seed=1)
    assert holdout_rows(49, seed=1).size == 0
    assert held.size == 100 and np.unique(held).size == 100 and held.max() < 500
    assert not np.array_equal(held, holdout_rows(500, seed=2))
