"""Anonymeter-style attacks (Giomi et al. 2023): a copy of the training rows is risky, fresh rows are not."""

from __future__ import annotations

import pytest

from synthgate.schemas.table import infer_schema
from synthgate.tasks.risk import measure_risks, risk_from_counts, wilson
from synthgate.tasks.split import split_holdout


def test_wilson_interval_contains_rate_and_stays_in_unit_interval():
    # Act
    rate, lo, hi = wilson(3, 10)

    # Assert
    assert 0 <= lo < rate < hi <= 1
    assert wilson(0, 50)[1] == 0.0


def test_risk_formula():
    # Act
    result = risk_from_counts("linkability_risk", 60, 100, 20, 100)

    # Assert
    assert result.risk == pytest.approx((0.6 - 0.2) / 0.8)
    assert result.ci_low < result.risk < result.ci_high


def test_copy_is_linkable_and_fresh_rows_are_not(penguins):
    # Arrange
    frame = penguins.dropna().reset_index(drop=True)
    schema = infer_schema(frame)
    train, holdout = split_holdout(frame, fraction=0.3, seed=0)
    fresh = holdout.sample(len(train), replace=True, random_state=0)

    # Act
    copied = {m.name: m for m in measure_risks(train, holdout, train, schema, n_attacks=200)}
    novel = {m.name: m for m in measure_risks(train, holdout, fresh, schema, n_attacks=200)}

    # Assert
    assert copied["linkability_risk"].value > 0.5
    assert novel["linkability_risk"].value < 0.1
    assert copied["linkability_risk"].group == "privacy" and copied["linkability_risk"].passed is None
    assert copied["singling_out_risk"].value >= novel["singling_out_risk"].value
