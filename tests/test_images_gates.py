"""The image gates can fail: copies trip the memorisation check, noise trips fidelity; count planning is exact."""

from __future__ import annotations

import numpy as np
import pytest

from synthgate.schemas.image import ImageGateThresholds
from synthgate.tasks.images.augment import plan_counts
from synthgate.tasks.images.fidelity import check_fidelity, precision_recall
from synthgate.tasks.images.ingest import ingest_images
from synthgate.tasks.images.privacy import check_privacy
from synthgate.tasks.images.validate import ImageData, split_images, validate_images


@pytest.fixture(scope="module")
def digits() -> tuple[ImageData, ImageData, ImageData]:
    data = validate_images(ingest_images("dataset:digits"))
    return data, *split_images(data, seed=0)


def test_plan_counts_per_class_balance_and_default(digits):
    # Arrange
    data, train, _ = digits
    top = max(data.schema.counts.values())

    # Act
    per_class = plan_counts(data.schema, train.schema, per_class=7)
    balanced = plan_counts(data.schema, train.schema, balance=True)
    default = plan_counts(data.schema, train.schema)

    # Assert
    assert set(per_class.values()) == {7}
    assert {c: data.schema.counts[c] + n for c, n in balanced.items()} == dict.fromkeys(data.schema.classes, top)
    assert default == train.schema.counts


def test_training_copies_are_refused_by_the_memorisation_gate(digits):
    # Arrange: "synthetic" images that are training images.
    _, train, holdout = digits
    copies = train.subset(np.arange(200))

    # Act
    [metric] = check_privacy(train, holdout, copies, ImageGateThresholds())

    # Assert
    assert metric.value == 1.0 and metric.passed is False
    assert metric.details["exact_copies"] == 200
    assert metric.details["holdout_share"] < 0.15


@pytest.mark.slow
def test_noise_fails_fidelity_while_holdout_images_pass(digits):
    # Arrange
    _, train, holdout = digits
    rng = np.random.default_rng(0)
    noise = ImageData(
        rng.random(holdout.images.shape, dtype=np.float32), holdout.labels, holdout.sources, holdout.schema
    )

    # Act
    real = check_fidelity(train, holdout, holdout, ImageGateThresholds(), device="cpu", utility=False)
    fake = check_fidelity(train, holdout, noise, ImageGateThresholds(), device="cpu", utility=False)

    # Assert
    assert all(m.passed is not False for m in real.metrics), [(m.name, m.value) for m in real.metrics]
    failing = {m.name for m in fake.metrics if m.passed is False}
    assert {"class_accuracy", "frechet_ratio", "precision"} <= failing


def test_precision_recall_separate_realism_from_diversity():
    # Arrange: real points on a wide cloud; fake points collapsed onto a corner of it.
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 2))
    corner = real[real[:, 0] > 1.0]
    collapsed = corner + rng.normal(scale=0.01, size=corner.shape)

    # Act
    precision, recall = precision_recall(real, collapsed)

    # Assert
    assert precision > 0.9 and recall < 0.3
