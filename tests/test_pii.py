"""PII never reaches the output; rare categories are suppressed."""

from __future__ import annotations

import pandas as pd
import pytest
from faker import Faker

from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.request import RunRequest
from synthgate.schemas.table import infer_schema
from synthgate.tasks.protect import RARE_LABEL, complete_output, pseudonymize, suppress_rare_categories

PII_COLUMNS = ("email", "full_name", "phone", "ssn")


@pytest.fixture(scope="module")
def people(penguins: pd.DataFrame) -> pd.DataFrame:
    fake = Faker()
    fake.seed_instance(7)
    frame = penguins.dropna().reset_index(drop=True).copy()
    n = len(frame)
    frame["email"] = [fake.unique.email() for _ in range(n)]
    frame["full_name"] = [fake.unique.name() for _ in range(n)]
    frame["phone"] = [fake.unique.phone_number() for _ in range(n)]
    frame["ssn"] = [fake.unique.ssn() for _ in range(n)]
    frame.loc[3, "island"] = "Atlantis"  # a planted unique category
    return frame


def _cells(frame: pd.DataFrame) -> set[str]:
    return {str(v) for col in frame.columns for v in frame[col].dropna()}


@pytest.mark.slow
def test_flow_publishes_no_real_pii_and_no_unique_category(prefect_harness, people, tmp_path, monkeypatch):
    # Arrange
    from synthgate.flows.synthesize import synthesize_table

    monkeypatch.setenv("SYNTHGATE_HASH_KEY", "test-secret")
    source = tmp_path / "people.csv"
    people.to_csv(source, index=False)
    overrides = tmp_path / "schema.yaml"
    overrides.write_text(
        "columns:\n  - {name: email, pii_action: fake}\n  - {name: full_name, pii_action: hash}\n"
        "  - {name: ssn, pii_action: fake}\n  - {name: phone, pii_action: drop}\n"
    )
    request = RunRequest(input=str(source), output=tmp_path / "out.parquet", schema_path=overrides, model="gmm")
    request = request.model_copy(update={"thresholds": request.thresholds.model_copy(update=_no_gates())})

    # Act
    result = synthesize_table(request, use_cache=False)
    out = pd.read_parquet(result.output)

    # Assert
    real = {str(v) for col in PII_COLUMNS for v in people[col]}
    assert not (_cells(out) & real)
    assert "phone" not in out.columns  # dropped on request
    assert set(out["full_name"].str.len()) == {64}  # keyed hashes of surrogates
    assert "Atlantis" not in set(out["island"])
    assert {m.name for m in result.metadata.gates.metrics} >= {
        "singling_out_risk",
        "linkability_risk",
        "inference_risk",
    }


def _no_gates() -> dict:
    from synthgate.schemas.gates import GateThresholds

    return dict.fromkeys(GateThresholds.model_fields)


def test_output_fakes_are_consistent_and_never_real(people):
    # Arrange
    schema = infer_schema(people).with_overrides({"columns": [{"name": c, "pii_action": "fake"} for c in PII_COLUMNS]})
    synthetic = people[[c.name for c in schema.modelled]].sample(50, random_state=0)

    # Act
    first = complete_output(synthetic, schema, seed=3, real=people)
    again = complete_output(synthetic, schema, seed=3, real=people)

    # Assert
    assert first.equals(again)
    for col in PII_COLUMNS:
        assert not set(first[col]) & set(people[col])
        assert first[col].nunique() == len(first)
    assert "@" in first["email"].iloc[0]


def test_pseudonymize_maps_equal_values_to_equal_fakes(people):
    # Arrange
    frame = pd.concat([people.head(5), people.head(5)], ignore_index=True)
    schema = infer_schema(people).with_overrides({"columns": [{"name": "phone", "pii_action": "drop"}]})

    # Act
    out = pseudonymize(frame, schema, seed=1)

    # Assert
    assert out["email"].head(5).tolist() == out["email"].tail(5).tolist()
    assert not set(out["email"]) & set(people["email"])
    assert "phone" not in out.columns


def test_hash_without_key_is_a_clear_error(people, monkeypatch):
    # Arrange
    monkeypatch.delenv("SYNTHGATE_HASH_KEY", raising=False)
    schema = infer_schema(people).with_overrides({"columns": [{"name": "email", "pii_action": "hash"}]})

    # Act / Assert
    with pytest.raises(InvalidInputError, match="SYNTHGATE_HASH_KEY"):
        complete_output(people[[c.name for c in schema.modelled]], schema, seed=0)


def test_rare_categories_become_one_bucket(people):
    # Arrange
    schema = infer_schema(people)

    # Act
    train, protected, suppressed = suppress_rare_categories(people, schema, k=5)

    # Assert
    assert suppressed["island"] == ["Atlantis"]
    assert "Atlantis" not in set(train["island"]) and RARE_LABEL in set(train["island"])
    assert "Atlantis" not in protected.column("island").categories


def test_an_integer_column_whose_every_value_is_rare_keeps_a_schema_that_dumps_to_json():
    # Arrange: twelve distinct small integers read as categories, each seen once
    frame = pd.DataFrame({"level": [850, 635, 509, 267, 305, 38, 72, 13, 172, 812, 648, 912]})
    schema = infer_schema(frame)

    # Act
    train, protected, suppressed = suppress_rare_categories(frame, schema, k=5)

    # Assert: one value stands for all, as a plain int the schema can write (run caching and YAML need it)
    assert len(suppressed["level"]) == 12 and train["level"].nunique() == 1
    assert protected.model_dump(mode="json")["columns"][0]["categories"] == [int(train["level"].iloc[0])]
