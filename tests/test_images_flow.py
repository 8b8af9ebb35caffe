"""The image flow on digits, end to end through Prefect, and the command's exit codes."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from flows.images import images_command, synthesize_images
from schemas.image import ImageRunRequest
from tasks.images.publish import read_images_parquet


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
    result = CliRunner().invoke(app, ["--input", str(tmp_path / "imgs"), "--output", str(tmp_path / "o.parquet")])

    # Assert
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "o.parquet").exists()
