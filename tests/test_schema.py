"""Schema inference, PII detection, YAML persistence, overrides and run-request validation."""

from __future__ import annotations

import pandas as pd
import pytest
from faker import Faker

from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.pii import PIIKind
from synthgate.schemas.request import RunRequest
from synthgate.schemas.table import ColumnKind, TableSchema, infer_schema


def test_penguins_kinds_nullability_and_bounds(penguins):
    # Act
    schema = infer_schema(penguins, name="penguins")

    # Assert
    measures = {"bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"}
    # The other four are categories, year too: three distinct years are a set, not a scale.
    expected = {c: ColumnKind.CONTINUOUS if c in measures else ColumnKind.CATEGORICAL for c in penguins.columns}
    assert {c.name: c.kind for c in schema.columns} == expected
    assert schema.column("species").categories == ["Adelie", "Chinstrap", "Gentoo"]
    assert schema.column("sex").nullable and not schema.column("species").nullable
    assert schema.column("body_mass_g").minimum == 2700.0 and schema.column("body_mass_g").maximum == 6300.0
    assert schema.column("bill_length_mm").decimals == 1
    assert schema.pii_columns == []


@pytest.fixture(scope="module")
def people() -> pd.DataFrame:
    fake = Faker("en_US")
    Faker.seed(7)
    n = 300
    return pd.DataFrame(
        {
            "customer_id": range(1000, 1000 + n),
            "contact": [fake.email() for _ in range(n)],
            "tel": [fake.phone_number() for _ in range(n)],
            "full_name": [fake.name() for _ in range(n)],
            "col_7": [fake.name() for _ in range(n)],  # a name column with an unhelpful name
            "ssn": [fake.ssn() for _ in range(n)],
            "notes": [fake.paragraph(nb_sentences=4) for _ in range(n)],
            "age": [fake.random_int(18, 90) for _ in range(n)],
            "plan": [fake.random_element(["basic", "plus", "pro"]) for _ in range(n)],
            "signup": pd.to_datetime([fake.date_time_between("-3y", "now") for _ in range(n)]),
            "active": [fake.boolean() for _ in range(n)],
        }
    )


def test_pii_is_flagged_by_content_and_name(people):
    # Act
    schema = infer_schema(people)

    # Assert
    pii = {c.name: c.pii for c in schema.columns}
    assert pii["contact"] == PIIKind.EMAIL
    assert pii["tel"] == PIIKind.PHONE
    assert pii["full_name"] == PIIKind.PERSON_NAME
    assert pii["col_7"] == PIIKind.PERSON_NAME
    assert pii["ssn"] == PIIKind.NATIONAL_ID
    assert pii["notes"] == PIIKind.FREE_TEXT
    assert pii["age"] is None and pii["plan"] is None and pii["active"] is None
    assert schema.column("customer_id").kind == ColumnKind.IDENTIFIER
    assert schema.column("signup").kind == ColumnKind.DATETIME
    assert schema.column("active").kind == ColumnKind.BOOLEAN
    assert schema.column("age").kind == ColumnKind.INTEGER
    assert [c.name for c in schema.modelled] == ["age", "plan", "signup", "active"]


def test_yaml_round_trip_and_overrides(penguins, tmp_path):
    # Arrange
    schema = infer_schema(penguins, name="penguins")
    path = tmp_path / "schema.yaml"

    # Act
    schema.to_yaml(path)
    loaded = TableSchema.from_yaml(path)
    overridden = loaded.with_overrides({"columns": {"year": {"kind": "integer", "categories": None, "minimum": 2000}}})

    # Assert
    assert loaded == schema
    assert overridden.column("year").kind == ColumnKind.INTEGER
    assert overridden.column("year").minimum == 2000
    assert overridden.column("species") == schema.column("species")


def test_override_of_unknown_column_names_it(penguins):
    schema = infer_schema(penguins)
    with pytest.raises(InvalidInputError, match="'wingspan'"):
        schema.with_overrides({"columns": [{"name": "wingspan", "kind": "continuous"}]})


def test_run_request_errors_name_the_field(tmp_path):
    # Arrange
    config = tmp_path / "request.yaml"
    config.write_text("input: dataset:penguins\noutput: out.parquet\nrows: -5\nthresholds: {colum_shapes_min: 0.9}\n")

    # Act
    with pytest.raises(InvalidInputError) as info:
        RunRequest.from_sources(config)

    # Assert
    message = str(info.value)
    assert "rows" in message
    assert "colum_shapes_min" in message  # a typo in a YAML key fails loudly (extra="forbid")


def test_run_request_command_line_overrides_file(tmp_path):
    config = tmp_path / "request.yaml"
    config.write_text("input: dataset:wine\noutput: a.parquet\nseed: 3\n")
    request = RunRequest.from_sources(config, seed=9, output=tmp_path / "b.parquet")
    assert request.seed == 9 and request.output.name == "b.parquet" and request.input == "dataset:wine"
    assert request.resolved_report_path == tmp_path / "b.html"
