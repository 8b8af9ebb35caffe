"""The CUDA path: every model trains, samples, round-trips and stays reproducible on a GPU.

Skipped where no GPU is present (CI, the 2-core machine); run on a lent GPU with `pytest tests/test_cuda.py`. The
planted table and its checks are the CPU tests' (`test_neural_models`), so a GPU-only bug (mixed precision, a tensor
left on the wrong device, a generator on the wrong device) fails the same structure checks the CPU path passes.
"""

from __future__ import annotations

import pytest
import torch

import synthgate.models.image  # noqa: F401  (registers the image models)
from synthgate.models.base import make_generator
from synthgate.models.encoders.table import TableEncoder
from synthgate.models.registry import build_model
from synthgate.schemas.table import infer_schema
from tests.test_neural_models import FAST, _structure, encode_for_each_model, planted_table

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TABLE_MODELS = ["gmm", "vae", "gan", "autoencoder"]


@pytest.fixture(scope="module")
def planted():
    frame = planted_table()
    return frame, encode_for_each_model(frame, tuple(TABLE_MODELS))


def _options(name: str) -> dict:
    return {} if name == "gmm" else dict(vars(FAST[name]))


@pytest.mark.parametrize("name", TABLE_MODELS)
def test_model_trains_on_cuda_and_recovers_the_planted_structure(name, planted, tmp_path):
    # Arrange
    frame, encoded = planted
    encoder, x = encoded[name]
    real_corr, real_freq, real_shift = _structure(frame)

    # Act
    model = build_model(name, spans=encoder.spans_, device="cuda", options=_options(name)).fit(x.cuda())
    rows = model.sample(4000, generator=make_generator(7, "cuda"))
    again = model.sample(4000, generator=make_generator(7, "cuda"))
    model.save(tmp_path / name)
    loaded = type(model).load(tmp_path / name, device="cuda")
    reloaded = loaded.sample(4000, generator=make_generator(7, "cuda"))
    corr, freq, shift = _structure(encoder.inverse_transform(rows))

    # Assert
    print(
        f"cuda {name}: corr {corr:.3f}/{real_corr:.3f} freq {freq.round(3).tolist()} shift {shift:.2f}/{real_shift:.2f}"
    )
    assert rows.is_cuda and rows.dtype == torch.float32
    assert torch.equal(rows, again) and torch.equal(rows, reloaded)
    assert abs(corr - real_corr) < 0.1
    assert 0.5 * (freq - real_freq).abs().sum() < 0.05
    # The vae under-recovers the shift and CUDA draws another random stream: its bound is the spread over seeds, which
    # a model that lost the shift (about 0) still fails by far.
    assert abs(shift - real_shift) < (0.75 if name == "vae" else 0.5)


@pytest.mark.parametrize("name", ["vae", "gan", "autoencoder"])
def test_seeded_cuda_fit_is_reproducible(name, penguins):
    # Arrange
    frame = penguins  # with its missing values: missing-indicator spans take the sigmoid path under autocast
    encoder = TableEncoder(infer_schema(frame), normalization="mode").fit(frame)
    x = encoder.transform(frame).cuda()
    options = {**_options(name), "epochs": 3}

    # Act
    a, b, c = (
        build_model(name, spans=encoder.spans_, device="cuda", options={**options, "seed": seed})
        .fit(x)
        .sample(50, generator=make_generator(1, "cuda"))
        for seed in (0, 0, 1)
    )

    # Assert
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", ["image_vae", "image_gan", "image_autoencoder"])
def test_image_model_trains_and_samples_its_classes_on_cuda(name):
    # Arrange
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)  # (n, 1, 8, 8) in [0, 1]
    y = torch.tensor(digits.target)
    model = build_model(name, device="cuda", options={"epochs": 2, "seed": 0})

    # Act
    model.fit(x, conditions=y)
    images = model.sample(20, conditions=torch.arange(20) % 10, generator=torch.Generator().manual_seed(0))

    # Assert
    assert images.shape == (20, 1, 8, 8)
    assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
