"""What gives synthetic rows away: planted give-aways on real tables must be the ones the detection gate names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthgate.schemas.table import infer_schema
from synthgate.tasks import fidelity, report
from synthgate.tasks.gates import evaluate_gates
from synthgate.tasks.giveaways import find_giveaways
from synthgate.tasks.split import split_holdout


@pytest.fixture(scope="module")
def wine_parts(wine):
    schema = infer_schema(wine)
    train, holdout = split_holdout(wine, fraction=0.3, seed=0)
    return schema, train.reset_index(drop=True), holdout.reset_index(drop=True)


def test_heaping_smeared_away_is_named_with_its_spike(penguins):
    # Arrange: body mass is heaped on multiples of 25 g; the "synthetic" copy jitters it off the grid.
    schema = infer_schema(penguins)
    train, holdout = split_holdout(penguins, fraction=0.3, seed=0)
    synthetic = train.reset_index(drop=True).copy()
    jitter = np.random.default_rng(0).uniform(-12, 12, len(synthetic))
    synthetic["body_mass_g"] = synthetic["body_mass_g"] + jitter

    # Act
    aucs, findings = find_giveaways(holdout, synthetic, schema.modelled, seed=0)

    # Assert
    assert findings[0]["columns"] == "body_mass_g"
    assert aucs["body_mass_g"] > 0.55  # only the values seen 5+ times are cells of their own on 344 rows
    assert "exactly" in findings[0]["why"] and "synthetic 0.0%" in findings[0]["why"]
    assert aucs["species"] < 0.6  # untouched columns stay near chance


def test_broken_pair_is_named_when_each_column_alone_is_fine(wine_parts):
    # Arrange: shuffle one column against the rest, keeping its marginal exactly.
    schema, train, holdout = wine_parts
    synthetic = train.copy()
    synthetic["flavanoids"] = np.random.default_rng(0).permutation(synthetic["flavanoids"].to_numpy())

    # Act
    aucs, findings = find_giveaways(holdout, synthetic, schema.modelled, seed=0)

    # Assert
    assert aucs["flavanoids"] < 0.65
    pairs = [f["columns"] for f in findings if " | " in f["columns"]]
    assert pairs and all("flavanoids" in p for p in pairs[:2])


@pytest.mark.slow
def test_detection_metric_carries_give_aways_into_gate_details_and_report(penguins):
    # Arrange: a planted give-away, the island column replaced by one constant level.
    schema = infer_schema(penguins, name="penguins")
    train, holdout = split_holdout(penguins, fraction=0.3, seed=0)
    synthetic = train.reset_index(drop=True).copy()
    synthetic["island"] = "Biscoe"

    # Act
    score = fidelity.detection_auc(holdout, synthetic, schema, seed=0)
    gates = evaluate_gates(train, holdout, synthetic, schema, max_privacy_queries=50, seed=0)
    html = report.render_report(schema=schema, real=holdout, synthetic=synthetic, gates=gates, facts={})

    # Assert
    assert score.info["give_aways"][0]["columns"] == "island"
    assert set(score.parts) >= {c.name for c in schema.modelled}
    assert gates.metric("detection_auc").details["give_aways"][0]["columns"] == "island"
    assert "What gives the synthetic rows away" in html and "<b>island</b>" in html


def test_identical_halves_give_nothing_away(wine_parts):
    # Arrange
    schema, train, holdout = wine_parts

    # Act
    aucs, _ = find_giveaways(holdout, train.sample(len(holdout), random_state=0), schema.modelled, seed=0)

    # Assert
    assert max(aucs.values()) < 0.7  # 53 vs 53 rows: single-column AUCs are noisy but far from a give-away
    assert pd.Series(aucs).median() < 0.6
