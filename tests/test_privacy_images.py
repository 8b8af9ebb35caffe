"""DP image models: DP-SGD through Opacus, the budget in the metadata, no class shares leaking around it."""

from __future__ import annotations

import warnings

import pytest
import torch
from pydantic import ValidationError

from synthgate.models.privacy import rdp_epsilon
from synthgate.models.registry import build_model, load_model
from synthgate.schemas.image import ImageGateThresholds, ImageRunRequest

warnings.filterwarnings("ignore", category=UserWarning)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """200 of scikit-learn's 8x8 digits in [0, 1], with skewed class shares (class 0 is 30% of them)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images[:, None] / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target)
    keep = torch.cat([torch.nonzero(y == 0).flatten()[:60], torch.nonzero(y != 0).flatten()[:140]])
    return x[keep], y[keep]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["image_vae", "image_gan"])
def test_dp_image_model_spends_at_most_the_target(digits, name):
    # Arrange
    x, y = digits
    options = {"epsilon": 3.0, "epochs": 1, "batch_size": 64, "base_channels": 8, "n_classes": 10}

    # Act
    model = build_model(name, device="cpu", options=options).fit(x, conditions=y)
    report = model.privacy_

    # Assert: the accountant's epsilon is the RDP bound of the steps taken, at most the target
    assert report["steps"] >= 1 and report["epsilon"] <= 3.0
    expected = rdp_epsilon(report["noise_multiplier"], report["sample_rate"], report["steps"], report["delta"])
    assert report["epsilon"] == pytest.approx(expected, abs=1e-3)
    assert torch.allclose(model.class_prior_, torch.full((10,), 0.1))  # not the private shares (0 is 30% here)


@pytest.mark.slow
def test_dp_image_autoencoder_fits_private_latent_mixtures_and_round_trips(digits, tmp_path):
    # Arrange
    x, y = digits
    options = {"epsilon": 3.0, "epochs": 1, "batch_size": 64, "base_channels": 8, "n_classes": 11}

    # Act: class 10 has no images; it still gets a (noise-only) mixture, so nothing branches on the counts
    model = build_model("image_autoencoder", device="cpu", options=options).fit(x, conditions=y)
    model.save(tmp_path / "m")
    loaded = load_model("image_autoencoder", tmp_path / "m")
    same = [m.sample(8, generator=torch.Generator().manual_seed(0)) for m in (model, loaded)]

    # Assert
    report = model.privacy_
    assert report["epsilon"] <= 3.0 + 1e-6
    assert report["mixture_epsilon"] == pytest.approx(0.6, abs=1e-3)
    assert all(m is not None and m.privacy_["epsilon"] <= 0.6 + 1e-6 for m in model.mixtures_)
    assert torch.equal(*same) and loaded.privacy_ == report


def test_augment_refuses_epsilon(tmp_path):
    with pytest.raises(ValidationError, match="augment"):
        ImageRunRequest(input="dataset:digits", output=tmp_path / "o.parquet", model="augment", epsilon=1.0)


@pytest.mark.slow
def test_dp_flow_records_epsilon_in_the_metadata(prefect_harness, tmp_path):
    # Arrange: one DP epoch cannot pass the quality gates, so they are information only here.
    from synthgate.flows.images import synthesize_images
    from synthgate.tasks.images.publish import read_images_parquet

    out = tmp_path / "digits.parquet"
    off = ImageGateThresholds(
        class_accuracy_min=None, frechet_ratio_max=None, precision_min=None, recall_min=None,
        memorisation_share_max=None,
    )  # fmt: skip
    request = ImageRunRequest(
        input="dataset:digits", output=out, model="vae", epochs=1, device="cpu", epsilon=3.0, thresholds=off,
        model_options={"base_channels": 8},
    )  # fmt: skip

    # Act
    result = synthesize_images(request)

    # Assert
    assert result.published
    _, labels, metadata = read_images_parquet(out)
    assert 0 < metadata["epsilon"] <= 3.0 and 0 < metadata["delta"] < 1e-3
    assert "counts" not in metadata["schema"]  # the per-class input counts are private
    assert len({labels.count(str(k)) for k in range(10)}) == 1  # equal counts, not the private class shares
    assert "epsilon" in out.with_suffix(".html").read_text()
