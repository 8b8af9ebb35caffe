"""Publishing images: PNG bytes round-trip to the same pixels, refusals write nothing, the report stands alone."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from synthgate.schemas.errors import GateRefusedError
from synthgate.schemas.gates import GateResult, MetricResult
from synthgate.schemas.metadata import METADATA_KEY
from synthgate.tasks.images.publish import publish_images, read_images_parquet
from synthgate.tasks.images.report import build_report

PASSED = GateResult(metrics=[MetricResult.judge("class_accuracy", "fidelity", 0.95, 0.8, "min")])
REFUSED = GateResult(metrics=[MetricResult.judge("class_accuracy", "fidelity", 0.40, 0.8, "min")])


@pytest.mark.parametrize("channels", [1, 3])
def test_parquet_round_trip_gives_the_same_pixels(tmp_path, channels):
    # Arrange: pixels on the 8-bit grid, as PNG stores them.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, channels, 9, 14)).astype(np.float32) / 255  # (n, C, H, W)
    labels = np.arange(12) % 3
    out = tmp_path / "synthetic.parquet"

    # Act
    publish_images(images, labels, ["a", "b", "c"], out, PASSED, {"model": "vae", "seed": 4})
    back, names, metadata = read_images_parquet(out)

    # Assert
    np.testing.assert_array_equal(np.rint(back * 255), np.rint(images * 255))
    assert names == [["a", "b", "c"][k] for k in labels]
    assert metadata == {"model": "vae", "seed": 4}
    assert json.loads(pq.read_schema(out).metadata[METADATA_KEY])["seed"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic.parquet"], "no temporary file is left behind"


def test_refused_gates_publish_nothing(tmp_path):
    # Arrange
    out = tmp_path / "synthetic.parquet"

    # Act
    with pytest.raises(GateRefusedError, match="class_accuracy"):
        publish_images(np.zeros((2, 1, 4, 4), np.float32), np.zeros(2, int), ["a"], out, REFUSED, {})

    # Assert
    assert not any(tmp_path.iterdir())


def test_report_is_self_contained_html_with_verdict_and_grids():
    # Arrange
    rng = np.random.default_rng(1)
    images = rng.random((20, 1, 8, 8)).astype(np.float32)
    labels = np.arange(20) % 2

    # Act
    html = build_report(
        title="t", gates=REFUSED, classes=["zero", "one"], real_images=images, real_labels=labels,
        synthetic_images=images, synthetic_labels=labels, facts={"model": "vae"},
        interpolations=[("zero -> one", images[:5])],
    )  # fmt: skip

    # Assert
    assert "REFUSED" in html and "class_accuracy" in html
    assert html.count("data:image/png;base64,") == 5  # 2 classes x (real, synthetic) + 1 strip
    assert "http://" not in html and "https://" not in html
