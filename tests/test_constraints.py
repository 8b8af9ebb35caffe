"""Rules between columns: found at inference, kept in the schema YAML, checked by GX, held on every synthetic row."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from synthgate.models.encoders.table import TableEncoder
from synthgate.models.registry import normalization_for
from synthgate.schemas.constraints import (
    FixedCombination,
    Inequality,
    discover_constraints,
    rows_holding,
)
from synthgate.schemas.errors import InvalidInputError, ValidationFailedError
from synthgate.schemas.table import TableSchema, infer_schema
from synthgate.tasks.fidelity import column_shapes
from synthgate.tasks.protect import suppress_rare_categories, training_frame
from synthgate.tasks.sample import sample_table
from synthgate.tasks.train import fit_model
from synthgate.tasks.validate import valid_row_share, validate_table

STATES = {
    "CA": ["Los Angeles", "San Diego", "Fresno"],
    "TX": ["Houston", "Austin", "Dallas"],
    "NY": ["Buffalo", "Albany"],
    "FL": ["Miami", "Tampa"],
}
PLANTED = {
    "last_login > signup_date",
    "first_order > signup_date",
    "last_login > first_order",
    "amount > paid",
    "temp_max > temp_min",
    "city determines state",
}


def crm(n: int = 1200, *, seed: int = 0, text_dates: bool = True) -> pd.DataFrame:
    """A small CRM export built with Faker: a chain of dates (signup <= first order <= last login, first order often
    missing), money paid within the amount, a min/max pair with missing maxima, and each city in one state."""
    from faker import Faker

    rng = np.random.default_rng(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    state = rng.choice(list(STATES), n, p=[0.4, 0.3, 0.2, 0.1])
    city = [STATES[s][rng.integers(len(STATES[s]))] for s in state]
    signup = pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 4 * 365, n), unit="D")
    login = signup + pd.to_timedelta(86_400 + rng.exponential(200 * 86_400, n).astype(np.int64), unit="s")
    first = (signup + (login - signup) * rng.random(n)).floor("s")
    first = pd.Series(first).mask(rng.random(n) < 0.25)
    amount = np.round(rng.lognormal(5, 0.6, n), 2)
    paid = np.round(amount * rng.beta(3, 1.5, n), 2)
    low = rng.normal(50, 10, n).round(1)
    high = (low + 0.1 + rng.gamma(2, 5, n)).round(1)
    high[rng.random(n) < 0.1] = np.nan
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(n) + 1000,
            "name": [fake.name() for _ in range(n)],
            "state": state,
            "city": city,
            "signup_date": pd.Series(signup),
            "first_order": first,
            "last_login": pd.Series(login),
            "amount": amount,
            "paid": paid,
            "temp_min": low,
            "temp_max": high,
            "segment": rng.choice(["retail", "business", "public"], n),
        }
    )
    if text_dates:  # as a CSV export writes them
        frame["signup_date"] = frame["signup_date"].dt.strftime("%Y-%m-%d").astype("str")
        for name in ("first_order", "last_login"):
            frame[name] = frame[name].dt.strftime("%Y-%m-%d %H:%M:%S").astype("str")
    return frame


def crm_schema(frame: pd.DataFrame) -> TableSchema:
    """The inferred schema, with text dates marked datetime (as text-date inference does) and their rules found."""
    schema = infer_schema(frame)
    dates = {"signup_date": 86_400.0, "first_order": 1.0, "last_login": 1.0}
    overrides = [
        {"name": name, "kind": "datetime", "pii": None, "pii_action": None, "resolution_seconds": step}
        for name, step in dates.items()
        if schema.column(name).kind != "datetime"
    ]
    if overrides:
        schema = schema.with_overrides({"columns": overrides})
        schema = schema.model_copy(update={"constraints": discover_constraints(frame, schema.columns)})
    return schema


def kinds_of(schema: TableSchema) -> dict[str, str]:
    return {c.name: c.kind.value for c in schema.columns}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return crm()


@pytest.fixture(scope="module")
def schema(table) -> TableSchema:
    return crm_schema(table)


# -------------------------------------------------------------------------------------------------- discovery
@pytest.mark.parametrize("text_dates", [True, False])
def test_discovery_finds_the_planted_rules_and_nothing_else(text_dates):
    # Arrange
    frame = crm(text_dates=text_dates)

    # Act
    schema = crm_schema(frame)

    # Assert
    assert {str(r) for r in schema.constraints} == PLANTED
    combo = next(r for r in schema.constraints if isinstance(r, FixedCombination))
    assert combo.mapping == {city: state for state, cities in STATES.items() for city in cities}
    assert "one state" in combo.reason and "1,200 rows" in combo.reason
    login = next(r for r in schema.constraints if str(r) == "last_login > signup_date")
    assert "on all 1,200 rows with both set" in login.reason


def test_datetime64_columns_are_found_by_plain_inference():
    # Arrange
    frame = crm(text_dates=False)

    # Act
    schema = infer_schema(frame)

    # Assert
    assert {str(r) for r in schema.constraints} == PLANTED


@pytest.mark.parametrize("name", ["penguins", "wine"])
def test_no_rules_on_penguins_and_wine(name, request):
    # Act
    schema = infer_schema(request.getfixturevalue(name))

    # Assert
    assert schema.constraints == []


def test_breast_cancer_worst_is_at_least_mean():
    # Arrange: each "worst" feature is the largest of the cells' values, so it is never below the "mean" one
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame

    # Act
    found = {str(r) for r in infer_schema(frame).constraints}

    # Assert
    for feature in ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity"):
        assert f"worst {feature} >= mean {feature}" in found
    assert all(str(r).startswith(("worst", "mean")) for r in infer_schema(frame).constraints)


def test_trivial_thin_and_chance_pairs_are_not_rules():
    # Arrange
    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame(
        {
            "big": rng.uniform(100, 200, n),  # always above `small`, but the ranges do not overlap
            "small": rng.uniform(0, 10, n),
            "sparse_hi": np.where(np.arange(n) < 15, rng.uniform(5, 9, n), np.nan),  # 15 rows with both set
            "sparse_lo": rng.uniform(0, 5, n),
            "edge_hi": rng.uniform(9.99, 20, n),  # overlaps `small` on a sliver: chance explains it
            "code": [f"c{i % 150}" for i in range(n)],  # too few rows per value to determine anything
            "flag": rng.choice(["x", "y"], n),
            "constant": "k",
        }
    )

    # Act
    schema = infer_schema(frame)

    # Assert
    assert schema.constraints == []


def test_wide_table_is_bounded():
    # Arrange: thousands of independent columns with overlapping ranges
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 2000)), columns=[f"c{i}" for i in range(2000)])

    # Act
    start = time.perf_counter()
    schema = infer_schema(frame)
    seconds = time.perf_counter() - start

    # Assert
    assert schema.constraints == []
    assert seconds < 60  # pairs are capped; a full 2000 x 2000 x 200 check would take minutes


# ----------------------------------------------------------------------------------------------- the schema
def test_yaml_round_trip_and_hand_edits(schema, tmp_path):
    # Arrange
    path = tmp_path / "crm.schema.yaml"
    schema.to_yaml(path)

    # Act
    loaded = TableSchema.from_yaml(path)
    edited = loaded.model_copy(
        update={
            "constraints": [
                *[r for r in loaded.constraints if str(r) != "temp_max > temp_min"],
                Inequality(high="temp_max", low="temp_min", reason="added by hand"),
            ]
        }
    )
    path.write_text(edited.to_yaml())
    reloaded = TableSchema.from_yaml(path)

    # Assert
    assert loaded == schema
    assert "temp_max >= temp_min" in {str(r) for r in reloaded.constraints}
    text = path.read_text()
    assert "kind: inequality" in text and "Austin: TX" in text


def test_a_rule_naming_an_unknown_column_is_refused(schema, tmp_path):
    # Arrange
    path = tmp_path / "bad.yaml"
    data = schema.model_dump(mode="json")
    data["constraints"].append({"kind": "inequality", "high": "balance", "low": "paid"})
    path.write_text(yaml.safe_dump(data))

    # Act / Assert
    with pytest.raises(InvalidInputError, match=r"balance >= paid.*'balance'"):
        TableSchema.from_yaml(path)


def test_overrides_find_date_rules_and_may_replace_the_list(table, tmp_path):
    # Arrange: an overrides file that marks the text dates as dates, and one that also clears the rules
    from synthgate.tasks.preprocess import resolve_schema

    dates = [{"name": n, "kind": "datetime", "pii": None, "pii_action": None} for n in ("signup_date", "last_login")]
    marked, cleared = tmp_path / "marked.yaml", tmp_path / "cleared.yaml"
    marked.write_text(yaml.safe_dump({"columns": dates}))
    cleared.write_text(yaml.safe_dump({"columns": dates, "constraints": []}))

    # Act
    found = resolve_schema(table, name="crm", schema_path=marked)
    none = resolve_schema(table, name="crm", schema_path=cleared)

    # Assert
    assert "last_login > signup_date" in {str(r) for r in found.constraints}
    assert none.constraints == []


# --------------------------------------------------------------------------------------------------- checks
def test_validation_names_the_broken_rules(table, schema):
    # Arrange
    bad = table.copy()
    bad.loc[3, "paid"] = bad.loc[3, "amount"] + 5
    bad.loc[7, "state"] = "FL" if bad.loc[7, "state"] != "FL" else "TX"
    bad.loc[9, "last_login"] = "2018-06-01 10:00:00"  # before every signup

    # Act
    validate_table(table, schema, source="crm.csv")  # the real table keeps its own rules
    with pytest.raises(ValidationFailedError) as caught:
        validate_table(bad, schema, source="crm.csv")

    # Assert
    message = str(caught.value)
    assert "crm.csv" in message
    assert "'amount, paid': rule amount > paid" in message
    assert "'city, state': rule city determines state" in message
    assert "'last_login, signup_date': rule last_login > signup_date" in message
    assert valid_row_share(bad, schema) == pytest.approx(1 - 3 / len(bad))


def test_rare_suppression_rewrites_the_mapping(table, schema):
    # Arrange: Albany becomes a rare city
    rare = table[table["city"] != "Albany"].copy()
    rare = pd.concat([rare, table[table["city"] == "Albany"].head(2)], ignore_index=True)

    # Act
    _, suppressed_schema, suppressed = suppress_rare_categories(rare, schema, k=5)

    # Assert
    combo = next(r for r in suppressed_schema.constraints if isinstance(r, FixedCombination))
    assert suppressed["city"] == ["Albany"] and "Albany" not in combo.mapping
    out = rare.copy()
    out.loc[0, ["city", "state"]] = ["__rare__", "CA"]
    out.loc[1, ["city", "state"]] = ["__rare__", "NY"]
    out["city"] = out["city"].where(out["city"] != "Albany", "__rare__")
    assert rows_holding(out, suppressed_schema.constraints, kinds_of(suppressed_schema)).all()


# -------------------------------------------------------------------------------------------- the transform
def test_encoder_round_trip_is_exact(table, schema):
    # Arrange
    frame = training_frame(table, schema)
    encoder = TableEncoder(schema).fit(frame)

    # Act
    back = encoder.inverse_transform(encoder.transform(frame))

    # Assert
    assert encoder.constraints_ is not None and {g.column for g in encoder.constraints_.gaps_} == {
        "first_order",
        "last_login",
        "amount",
        "temp_max",
    }
    # The model's float32 tensor carries datetimes to about a second (as it does without rules); the rest is exact.
    dates = ["signup_date", "first_order", "last_login"]
    pd.testing.assert_frame_equal(back.drop(columns=dates), frame.drop(columns=dates), check_exact=False, rtol=1e-6)
    for name in dates:
        seconds = (pd.to_datetime(back[name]) - pd.to_datetime(frame[name])).dt.total_seconds().abs()
        assert seconds.max() <= 5 and back[name].isna().equals(frame[name].isna())
    assert rows_holding(back, schema.constraints, kinds_of(schema)).all()


def test_saved_encoder_keeps_the_transform(table, schema, tmp_path):
    # Arrange
    frame = training_frame(table, schema)
    encoder = TableEncoder(schema, normalization="mode").fit(frame)
    encoded = encoder.transform(frame)

    # Act
    encoder.save(tmp_path / "encoder.json")
    loaded = TableEncoder.load(tmp_path / "encoder.json")

    # Assert
    pd.testing.assert_frame_equal(loaded.inverse_transform(encoded), encoder.inverse_transform(encoded))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gmm", "vae", "gan", "autoencoder"])
def test_synthetic_rows_hold_every_rule(model, table, schema):
    # Arrange
    train = table.iloc[:900]
    frame = training_frame(train, schema)
    encoder = TableEncoder(schema, normalization=normalization_for(model)).fit(frame)
    options = {} if model == "gmm" else {"epochs": 150}
    fitted = fit_model(encoder.transform(frame), model=model, spans=encoder.spans_, device="cpu", options=options)

    # Act
    raw = encoder.inverse_transform(fitted.model.sample(2000, generator=torch.Generator().manual_seed(1)))
    synthetic = sample_table(fitted.model, encoder, 2000, generator=torch.Generator().manual_seed(1))

    # Assert
    assert rows_holding(raw, schema.constraints, kinds_of(schema)).mean() >= 0.99  # held by the transform itself
    assert rows_holding(synthetic, schema.constraints, kinds_of(schema)).all()
    assert valid_row_share(synthetic, schema) == 1.0
    assert synthetic["first_order"].isna().mean() == pytest.approx(0.25, abs=0.1)  # nulls in the chain survive
    assert column_shapes(table.iloc[900:], synthetic, schema).value >= 0.8


# ------------------------------------------------------------------------------------------------- the flow
@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_flow_publishes_rows_that_hold_every_rule(tmp_path):
    # Arrange: dates as datetime64 in Parquet, so plain inference finds their rules
    from synthgate.flows.synthesize import synthesize_table
    from synthgate.schemas.request import RunRequest
    from synthgate.tasks.publish import read_metadata

    source = tmp_path / "crm.parquet"
    crm(900, seed=2, text_dates=False).to_parquet(source)
    request = RunRequest(input=str(source), output=tmp_path / "out.parquet", seed=0)

    # Act
    result = synthesize_table(request)

    # Assert
    published = pd.read_parquet(result.output)
    meta = read_metadata(result.output)
    schema = TableSchema.model_validate(meta.schema_)
    assert {str(r) for r in schema.constraints} == PLANTED
    assert rows_holding(published, schema.constraints, kinds_of(schema)).all()
    assert meta.gates.metric("schema_validity").value == 1.0
    assert meta.gates.passed
