"""Fidelity metrics on real tables: each has a known answer on a hand-made case and separates good from broken data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthgate.schemas.table import infer_schema
from synthgate.tasks import fidelity
from synthgate.tasks.split import split_holdout


def independent_marginals(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """Each column drawn on its own from `frame`: perfect 1-D shapes, no joint structure."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: frame[c].to_numpy()[rng.integers(0, len(frame), n)] for c in frame.columns})


@pytest.fixture(scope="module")
def penguin_parts(penguins):
    schema = infer_schema(penguins)
    train, holdout = split_holdout(penguins, fraction=0.3, seed=0)
    return schema, train, holdout


def test_ks_complement_counts_missing_share_and_shift():
    # Arrange
    values = np.array([1.0, 2.0, 3.0, 4.0])
    with_missing = np.array([1.0, 2.0, np.nan, np.nan])

    # Act
    same = fidelity.ks_complement(values, values.copy())
    disjoint = fidelity.ks_complement(values, values + 10)
    missing = fidelity.ks_complement(np.array([1.0, 2.0, 1.0, 2.0]), with_missing)

    # Assert
    assert same == 1.0
    assert disjoint == 0.0
    assert missing == pytest.approx(0.5)  # half the synthetic mass sits at "missing", below every number


def test_tv_complement_is_one_minus_total_variation():
    # Arrange
    real = np.array(["a", "a", "b", "b"], dtype=object)
    synthetic = np.array(["a", "a", "a", "c"], dtype=object)

    # Act
    score = fidelity.tv_complement(real, synthetic)

    # Assert: |0.5-0.75| + |0.5-0| + |0-0.25| = 1.0, halved = 0.5
    assert score == pytest.approx(0.5)


def test_column_shapes_perfect_on_identical_and_low_on_collapsed(penguin_parts):
    # Arrange
    schema, _, holdout = penguin_parts
    collapsed = holdout.copy()
    collapsed["species"] = "Adelie"
    collapsed["body_mass_g"] = collapsed["body_mass_g"].median()

    # Act
    same = fidelity.column_shapes(holdout, holdout.copy(), schema)
    broken = fidelity.column_shapes(holdout, collapsed, schema)

    # Assert
    assert same.value == pytest.approx(1.0)
    assert broken.parts["species"] < 0.6
    assert broken.parts["body_mass_g"] < 0.6
    assert set(same.parts) == {c.name for c in schema.modelled}


def test_pair_trends_fall_for_independent_marginals(penguin_parts):
    # Arrange
    schema, train, holdout = penguin_parts
    marginals = independent_marginals(train, len(train))

    # Act
    real_vs_real = fidelity.pair_trends(holdout, train, schema)
    real_vs_marginals = fidelity.pair_trends(holdout, marginals, schema)

    # Assert: every kind of pair is judged, and breaking the joint costs far more than sampling noise
    assert "bill_length_mm | flipper_length_mm" in real_vs_real.parts  # numeric pair
    assert "species | island" in real_vs_real.parts  # categorical pair
    assert "species | bill_length_mm" in real_vs_real.parts  # numeric-categorical pair (binned)
    assert real_vs_real.value - real_vs_marginals.value > 0.08
    assert real_vs_marginals.parts["species | flipper_length_mm"] < real_vs_real.parts["species | flipper_length_mm"]


@pytest.mark.slow
def test_detection_auc_separates_marginals_but_not_real_rows(penguin_parts):
    # Arrange
    schema, train, holdout = penguin_parts
    marginals = independent_marginals(train, len(train))

    # Act
    real = fidelity.detection_auc(holdout, train, schema, seed=0)
    broken = fidelity.detection_auc(holdout, marginals, schema, seed=0)

    # Assert
    assert real.value < 0.7
    assert broken.value > 0.85
    assert broken.info["synthetic_rows"] == len(train)


@pytest.mark.slow
def test_ml_utility_is_one_for_real_rows_and_low_for_marginals(wine):
    # Arrange
    schema = infer_schema(wine)
    train, holdout = split_holdout(wine, fraction=0.3, seed=0)

    # Act
    real = fidelity.ml_utility(train, holdout, train, schema, "target", seed=0)
    broken = fidelity.ml_utility(train, holdout, independent_marginals(train, len(train)), schema, "target", seed=0)

    # Assert
    assert real.value == pytest.approx(1.0)
    assert real.info["measure"] == "macro-F1" and real.info["trtr"] > 0.8
    assert broken.value < 0.6


def test_ml_utility_uses_r2_for_numeric_target(penguin_parts):
    # Arrange
    schema, train, holdout = penguin_parts

    # Act
    score = fidelity.ml_utility(train, holdout, train, schema, "body_mass_g", seed=0)

    # Assert
    assert score.info["measure"] == "R^2"
    assert score.value == pytest.approx(1.0)


def test_ml_utility_scores_synthetic_rows_with_an_empty_column(penguin_parts):
    # Arrange: a model that left a whole column missing (a tiny private fit can): the booster cannot bin it
    schema, train, holdout = penguin_parts
    synthetic = train.copy()
    synthetic["bill_length_mm"] = np.nan

    # Act
    score = fidelity.ml_utility(train, holdout, synthetic, schema, "species", seed=0)

    # Assert: scored on the other columns, not crashed; bill length is what tells Chinstrap apart, so some is lost
    assert 0.3 < score.value < 1.0


def test_coverage_sees_lost_categories_and_range(penguin_parts):
    # Arrange
    schema, _, holdout = penguin_parts
    narrow = holdout[(holdout["species"] == "Adelie")].copy()

    # Act
    full = fidelity.coverage(holdout, holdout, schema)
    partial = fidelity.coverage(holdout, narrow, schema)

    # Assert
    assert full.value == pytest.approx(1.0)
    assert partial.parts["species"] == pytest.approx(1 / 3)
    assert partial.parts["flipper_length_mm"] < 0.7  # Adelie flippers cover only the lower part of the range
