"""Privacy metrics: exact Gower distances on mixed types, and copies told apart from fresh real rows on penguins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from synthgate.schemas.table import infer_schema
from synthgate.tasks import privacy
from synthgate.tasks.distance import GowerEncoder, embed, nearest, pairwise


@pytest.fixture(scope="module")
def penguin_thirds(penguins):
    """Train (half), holdout (quarter) and a quarter of fresh real rows standing in for ideal synthetic data."""
    schema = infer_schema(penguins)
    order = np.random.default_rng(0).permutation(len(penguins))
    half, three_q = len(penguins) // 2, 3 * len(penguins) // 4
    parts = [penguins.iloc[order[a:b]].reset_index(drop=True) for a, b in ((0, half), (half, three_q), (three_q, None))]
    return schema, *parts


def test_gower_distance_matches_hand_computation():
    # Arrange: numeric (range 10), categorical, datetime (range 10 days) and missing values
    frame = pd.DataFrame(
        {
            "x": [0.0, 10.0, 5.0, np.nan],
            "c": ["a", "b", "a", None],
            "t": pd.to_datetime(["2024-01-01", "2024-01-11", "2024-01-06", None]),
        }
    )
    schema = infer_schema(frame)
    encoder = GowerEncoder.fit(schema, frame)

    # Act
    d = pairwise(embed(encoder, frame), embed(encoder, frame)).numpy()

    # Assert: mean over 3 columns of per-column distances
    assert d[0, 1] == pytest.approx((1.0 + 1.0 + 1.0) / 3, abs=1e-6)
    assert d[0, 2] == pytest.approx((0.5 + 0.0 + 0.5) / 3, abs=1e-6)
    assert d[0, 3] == pytest.approx((1.0 + 1.0 + 1.0) / 3, abs=1e-6)  # missing vs present counts 1
    assert d[3, 3] == pytest.approx(0.0, abs=1e-6)  # both missing counts 0
    assert np.allclose(d, d.T, atol=1e-6)


def test_chunked_nearest_equals_brute_force(penguins):
    # Arrange
    schema = infer_schema(penguins)
    encoder = GowerEncoder.fit(schema, penguins)
    query, reference = embed(encoder, penguins.iloc[:50]), embed(encoder, penguins.iloc[50:])
    full = pairwise(query, reference)
    expected = torch.sort(full, dim=1).values[:, :2].double().numpy()

    # Act: blocks of 7 query rows force many chunks
    d1, d2 = nearest(query, reference, block_elements=7 * len(reference))

    # Assert
    assert np.allclose(d1, expected[:, 0]) and np.allclose(d2, expected[:, 1])


def test_exact_match_ratio_flags_copies_not_fresh_rows(penguin_thirds):
    # Arrange
    schema, train, holdout, fresh = penguin_thirds
    copies = train.sample(len(fresh), replace=True, random_state=0)

    # Act
    copied = privacy.exact_match_ratio(train, holdout, copies, schema)
    novel = privacy.exact_match_ratio(train, holdout, fresh, schema)

    # Assert
    assert copied.info["synthetic_rate"] == 1.0 and copied.value > 10
    assert novel.value <= 1.5


def test_row_keys_ignore_dtype_differences(penguins):
    # Arrange: the same rows with float columns and nullable integers
    schema = infer_schema(penguins)
    other = penguins.copy()
    other["year"] = other["year"].astype("Int64")
    other["body_mass_g"] = other["body_mass_g"].astype("float32").astype("float64")

    # Act / Assert
    assert np.array_equal(privacy.row_keys(penguins, schema), privacy.row_keys(other, schema))


def test_distance_metrics_separate_copies_jitter_and_fresh_rows(penguin_thirds):
    # Arrange
    schema, train, holdout, fresh = penguin_thirds
    rng = np.random.default_rng(0)
    copies = train.sample(len(train), replace=True, random_state=0).reset_index(drop=True)
    jitter = copies.copy()
    for col in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"):
        jitter[col] = jitter[col] + rng.normal(0, 0.05 * train[col].std(), len(jitter))

    # Act
    measures = {}
    for name, synthetic in (("fresh", fresh), ("copies", copies), ("jitter", jitter)):
        d = privacy.privacy_distances(train, holdout, synthetic, schema, seed=0)
        measures[name] = {
            "excess": privacy.dcr_share_excess(d),
            "ratio": privacy.dcr_ratio(d).value,
            "nndr": privacy.nndr_ratio(d).value,
            "mia": privacy.mia_auc(d).value,
        }

    # Assert: fresh real rows look like the holdout; copies and near-copies sit on top of training rows
    assert abs(measures["fresh"]["excess"].value) < 0.45  # 3 standard errors with 86 query rows
    assert measures["fresh"]["excess"].info["baseline"] == pytest.approx(len(train) / (len(train) + len(holdout)))
    assert 0.6 < measures["fresh"]["ratio"] < 1.7
    assert measures["fresh"]["nndr"] > 0.7
    assert measures["fresh"]["mia"] < 0.65
    for name in ("copies", "jitter"):
        assert measures[name]["excess"].value > 0.9
        assert measures[name]["ratio"] < 0.3
        assert measures[name]["nndr"] < 0.4
        assert measures[name]["mia"] > 0.7


def test_dcr_uses_the_full_training_set(penguin_thirds):
    # Arrange: copies of training rows far outside the first max_queries rows
    schema, train, holdout, _ = penguin_thirds
    copies = train.iloc[len(train) // 2 :].reset_index(drop=True)

    # Act: at most 10 query rows, yet every reference row is searched
    d = privacy.privacy_distances(train, holdout, copies, schema, seed=0, max_queries=10)

    # Assert
    assert d.syn_train.size == 10
    assert np.all(d.syn_train == 0)
    assert privacy.dcr_share_excess(d).value == pytest.approx(1.0)


def test_dcr_histogram_is_small_and_consistent(penguin_thirds):
    # Arrange
    schema, train, holdout, fresh = penguin_thirds
    d = privacy.privacy_distances(train, holdout, fresh, schema, seed=0)

    # Act
    hist = privacy.dcr_histogram(d)

    # Assert
    assert len(hist["edges"]) == privacy.HISTOGRAM_BINS + 1
    assert sum(hist["synthetic_to_train"]) == d.syn_train.size
    assert sum(hist["holdout_to_train"]) == d.hold_train.size
