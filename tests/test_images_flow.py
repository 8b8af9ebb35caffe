"""The image flow on digits, end to end through Prefect, and the command's exit codes."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

import synthgate.flows.images as images_flow
from synthgate.flows.images import images_command, synthesize_images
from synthgate.schemas.errors import GateRefusedError
from synthgate.schemas.gates import GateResult, MetricResult
from synthgate.schemas.image import ImageGateThresholds, ImageRunRequest
from synthgate.tasks.images.publish import read_images_parquet
from tests.terminal import prefect_console


@pytest.mark.slow
def test_flow_publishes_balanced_digits(prefect_harness, tmp_path):
    # Arrange
    out = tmp_path / "digits.parquet"
    request = ImageRunRequest(
        input="dataset:digits", output=out, model="autoencoder", per_class=30, epochs=20, device="cpu"
    )

    # Act
    result = synthesize_images(request)

    # Assert
    assert result.published, result.gates.summary()
    images, labels, metadata = read_images_parquet(out)
    assert images.shape == (300, 1, 8, 8)
    assert {labels.count(str(k)) for k in range(10)} == {30}
    assert metadata["gates"]["metrics"] and metadata["model"] == "autoencoder"
    report = out.with_suffix(".html").read_text()
    assert "PUBLISHED" in report


def test_bad_input_exits_2_before_any_training(prefect_harness, tmp_path):
    # Arrange
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "a" / "x.png").write_bytes(b"not a png")
    app = typer.Typer()
    app.command()(images_command)

    # Act
    with prefect_console() as logs:
        result = CliRunner().invoke(app, ["--input", str(tmp_path / "imgs"), "--output", str(tmp_path / "o.parquet")])

    # Assert: one clean message, no traceback from Prefect's failed-run logs
    assert result.exit_code == 2, result.output
    assert "Traceback" not in logs.getvalue() + result.output
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.slow
def test_refused_run_writes_the_report_and_nothing_at_the_output(prefect_harness, tmp_path):
    # Arrange: an unreachable class-accuracy bar (classic augmentation scores about 0.9).
    out = tmp_path / "digits.parquet"
    request = ImageRunRequest(
        input="dataset:digits", output=out, model="augment", per_class=20, device="cpu",
        thresholds=ImageGateThresholds(class_accuracy_min=1.0),
    )  # fmt: skip

    # Act
    with pytest.raises(GateRefusedError) as info:
        synthesize_images(request)

    # Assert
    assert "class_accuracy" in info.value.gate_result.failing
    assert not out.exists()
    assert "REFUSED" in out.with_suffix(".html").read_text()


def test_gate_refusal_exits_3(monkeypatch, tmp_path):
    # Arrange
    refused = GateResult(metrics=[MetricResult.judge("precision", "fidelity", 0.1, 0.5, "min")])

    def refuse(request):
        raise GateRefusedError(refused, str(tmp_path / "o.html"))

    monkeypatch.setattr(images_flow, "synthesize_images", refuse)
    app = typer.Typer()
    app.command()(images_command)

    # Act
    result = CliRunner().invoke(app, ["--input", "dataset:digits", "--output", str(tmp_path / "o.parquet")])

    # Assert
    assert result.exit_code == 3, result.output
    assert "precision" in result.output
