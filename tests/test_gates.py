"""The default gates on real tables: refuse independent marginals and copies, accept the project's fitted GMM.

Each case uses the product's own split (20% holdout) and a named target, as a data team would run it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from synthgate.models.encoders.table import TableEncoder
from synthgate.models.gmm import GaussianMixture, GMMConfig
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.gates import GateResult, GateThresholds
from synthgate.schemas.table import ColumnKind, TableSchema, infer_schema
from synthgate.tasks.gates import evaluate_gates
from synthgate.tasks.split import split_holdout

TARGETS = {"penguins": "species", "wine": "target"}
PRIVACY_CHECKS = {"exact_match_ratio", "dcr_share_excess", "dcr_ratio", "nndr_ratio", "mia_auc"}


def independent_marginals(train: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: train[c].to_numpy()[rng.integers(0, len(train), n)] for c in train.columns})


def copies(train: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    return train.sample(n, replace=True, random_state=seed).reset_index(drop=True)


def jittered_copies(train: pd.DataFrame, schema: TableSchema, n: int, seed: int = 0) -> pd.DataFrame:
    """Training rows with every number moved by 5% of its column's standard deviation (rounded like the data)."""
    out = copies(train, n, seed)
    rng = np.random.default_rng(seed)
    for col in schema.modelled:
        if col.kind in (ColumnKind.CONTINUOUS, ColumnKind.INTEGER):
            values = out[col.name].astype(float)
            moved = (values + rng.normal(0, 0.05 * values.std(), n)).round(col.decimals or 0)
            out[col.name] = moved if col.kind == ColumnKind.CONTINUOUS else moved.astype("Int64")
    return out


def gmm_sample(train: pd.DataFrame, schema: TableSchema, n: int, seed: int = 0) -> pd.DataFrame:
    encoder = TableEncoder(schema)
    x = encoder.fit_transform(train)
    model = GaussianMixture(GMMConfig(seed=seed), spans=encoder.spans_, device="cpu").fit(x)
    return encoder.inverse_transform(model.sample(n, generator=torch.Generator().manual_seed(seed)))


@pytest.fixture(scope="module", params=["penguins", "wine"])
def table(request):
    frame = request.getfixturevalue(request.param)
    schema = infer_schema(frame, name=request.param)
    train, holdout = split_holdout(frame, fraction=0.2, seed=0)
    return request.param, schema, train, holdout


def run_gates(table, synthetic: pd.DataFrame) -> GateResult:
    name, schema, train, holdout = table
    return evaluate_gates(train, holdout, synthetic, schema, GateThresholds(), target=TARGETS[name], seed=0)


@pytest.mark.slow
def test_independent_marginals_are_refused_for_broken_joint_structure(table):
    # Arrange
    _, _, train, _ = table
    synthetic = independent_marginals(train, len(train))

    # Act
    result = run_gates(table, synthetic)

    # Assert: refused, and the joint-structure checks say why while 1-D shapes still look fine
    assert not result.passed
    assert {"ml_utility", "detection_auc"} <= set(result.failing) or {"ml_utility", "pair_trends"} <= set(
        result.failing
    )
    assert result.metric("column_shapes").passed
    assert "REFUSED" in result.summary() and "ml_utility" in result.summary()


@pytest.mark.slow
def test_private_runs_gate_without_detection_yet_still_refuse_baselines_and_copiers(table):
    # Arrange: the thresholds of a run with --epsilon (detection AUC information only, unless the request sets it)
    name, schema, train, holdout = table
    private = GateThresholds().for_private_run()
    explicit = GateThresholds(detection_auc_max=0.8).for_private_run()

    # Act
    marginals, copied = (
        evaluate_gates(train, holdout, synthetic, schema, private, target=TARGETS[name], seed=0)
        for synthetic in (independent_marginals(train, len(train)), copies(train, len(train)))
    )

    # Assert: the calibration baselines are still refused, by joint structure and by privacy
    assert private.detection_auc_max is None and explicit.detection_auc_max == 0.8
    assert not marginals.passed and "detection_auc" not in marginals.failing
    assert {"pair_trends", "ml_utility"} & set(marginals.failing)
    assert not copied.passed and {"exact_match_ratio", "dcr_share_excess"} & set(copied.failing)


@pytest.mark.slow
def test_copies_of_training_rows_are_refused_by_privacy(table):
    # Arrange
    _, _, train, _ = table

    # Act
    result = run_gates(table, copies(train, len(train)))

    # Assert
    assert not result.passed
    assert {"exact_match_ratio", "dcr_share_excess", "dcr_ratio", "mia_auc"} <= set(result.failing)


@pytest.mark.slow
def test_lightly_jittered_copies_are_refused_by_privacy(table):
    # Arrange
    _, schema, train, _ = table

    # Act
    result = run_gates(table, jittered_copies(train, schema, len(train)))

    # Assert: no exact copies are needed to be caught
    assert not result.passed
    assert {"dcr_share_excess", "dcr_ratio", "nndr_ratio", "mia_auc"} <= set(result.failing)
    assert set(result.failing) <= PRIVACY_CHECKS


@pytest.mark.slow
def test_project_gmm_is_accepted(table):
    # Arrange
    name, schema, train, _ = table
    synthetic = gmm_sample(train, schema, len(train))

    # Act
    result = run_gates(table, synthetic)

    # Assert
    assert result.passed, f"{name}: {result.summary()} " + str({m.name: (m.value, m.threshold) for m in result.metrics})
    assert result.metric("detection_auc").value < 0.8
    assert {m.name for m in result.metrics} == {
        "column_shapes",
        "pair_trends",
        "detection_auc",
        "ml_utility",
        "coverage",
        *PRIVACY_CHECKS,
    }


@pytest.fixture(scope="module")
def penguin_table(penguins):
    schema = infer_schema(penguins, name="penguins")
    train, holdout = split_holdout(penguins, fraction=0.2, seed=0)
    return "penguins", schema, train, holdout


@pytest.mark.slow
def test_every_metric_carries_value_threshold_direction_and_verdict(penguin_table):
    # Arrange
    _, schema, train, holdout = penguin_table
    thresholds = GateThresholds(coverage_min=None)

    # Act
    result = evaluate_gates(train, holdout, holdout, schema, thresholds, validity=0.98, seed=0)

    # Assert
    names = {m.name for m in result.metrics}
    assert "schema_validity" in names and "ml_utility" not in names  # no target given
    assert result.metric("schema_validity").passed is False  # 0.98 < 1.0
    assert result.metric("coverage").passed is None  # threshold None: information only
    for m in result.metrics:
        field = f"{m.name}_{m.direction}"
        assert field in GateThresholds.model_fields
        assert m.threshold == getattr(thresholds, field)
        assert m.description
    assert "histogram" in result.metric("dcr_share_excess").details


@pytest.mark.slow
def test_subsampling_is_recorded_in_notes(penguin_table):
    # Arrange
    _, schema, train, holdout = penguin_table

    # Act
    result = evaluate_gates(train, holdout, train, schema, max_rows=20, max_privacy_queries=15, seed=0)

    # Assert
    assert any(n.startswith("detection_auc") for n in result.notes)
    assert any(n.startswith("distance metrics: 15 random query rows") for n in result.notes)


def test_unknown_target_is_an_input_error(penguins):
    # Arrange
    schema = infer_schema(penguins)
    train, holdout = split_holdout(penguins, fraction=0.2, seed=0)

    # Act / Assert
    with pytest.raises(InvalidInputError, match="target 'nope'"):
        evaluate_gates(train, holdout, train, schema, target="nope")
