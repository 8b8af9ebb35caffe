"""The HTML pieces both reports share: one metric table, one banner, atomic writes."""

from __future__ import annotations

import numpy as np

from synthgate.schemas.gates import GateResult, MetricResult
from synthgate.tasks.images.report import build_report, write_report
from synthgate.tasks.report_html import CSS, banner, fmt, metric_table, page

GATES = GateResult(
    metrics=[
        MetricResult.judge("column_shapes", "fidelity", 0.91, 0.85, "min"),
        MetricResult.judge("exact_match_ratio", "privacy", 3.0, 1.5, "max"),
    ]
)


def test_metric_table_marks_the_failing_row_with_its_threshold():
    # Act
    table = metric_table(GATES)

    # Assert
    rows = table.split("<tr")[2:]  # after the header
    assert "column_shapes" in rows[0] and "failrow" not in rows[0] and "&ge; 0.850" in rows[0]
    assert "exact_match_ratio" in rows[1] and 'class="failrow"' in rows[1] and "&le; 1.500" in rows[1]
    assert '<span class="bad">FAIL</span>' in rows[1]


def test_banner_counts_the_gated_checks_and_names_what_failed():
    red = banner(GATES)
    assert "REFUSED: 1 of 2 gated checks failed" in red and "<b>exact_match_ratio</b> = 3.000" in red
    green = banner(GateResult(metrics=GATES.metrics[:1]), what="synthetic image set")
    assert "PUBLISHED: all 1 gated checks passed" in green and "synthetic image set" in green


def test_fmt_keeps_small_values_precise_and_large_ones_readable():
    assert (fmt(None), fmt(0.12345), fmt(123456.7), fmt(3)) == ("n/a", "0.123", "123,457", "3")


def test_image_report_uses_the_shared_page_and_writes_atomically(tmp_path):
    # Arrange
    images = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    labels = np.arange(6) % 2

    # Act
    text = build_report(
        title="digits", gates=GATES, classes=["a", "b"], real_images=images, real_labels=labels,
        synthetic_images=images, synthetic_labels=labels, facts={"model": "vae"},
    )  # fmt: skip
    path = write_report(tmp_path / "sub" / "r.html", text)

    # Assert
    assert CSS in text and metric_table(GATES) in text and text.startswith(page("digits", "")[:40])
    assert [p.name for p in path.parent.iterdir()] == ["r.html"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"
