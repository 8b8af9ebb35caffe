"""The image models keep the model protocol, handle any image size, and sample the class they are asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthgate.models.image.classifier import predict_features, train_classifier
from synthgate.models.registry import MODELS, build_model, get_model, image_model_names
from synthgate.schemas.errors import InvalidInputError, NotFittedError
from synthgate.tasks.images.ingest import ingest_images
from synthgate.tasks.images.validate import split_images, validate_images

IMAGE_MODELS = [f"image_{name}" for name in image_model_names()]


def _tiny(name: str):
    """A model small and short enough for contract tests (the contract, not the quality, is under test)."""
    options = {"epochs": 1, "seed": 3}
    if name != "image_augment":
        options["base_channels"] = 8
    return build_model(name, device="cpu", options=options)


@pytest.fixture(scope="module")
def odd_images() -> tuple[torch.Tensor, torch.Tensor]:
    """RGB images of a size no power of two divides: 13x21, three classes."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(30, 3, 13, 21, generator=gen)  # (n, C, H, W)
    y = torch.arange(30) % 3
    return x, y


@pytest.fixture(scope="module")
def digits():
    data = validate_images(ingest_images("dataset:digits"))
    return split_images(data, seed=0)


@pytest.fixture(scope="module")
def digit_classifier(digits):
    train, _ = digits
    return train_classifier(train.images, train.labels, 10, seed=0, device="cpu")


def test_every_image_model_in_the_registry_resolves_to_its_class():
    # Act
    classes = {name: get_model(name) for name in IMAGE_MODELS}

    # Assert: each name imports a class whose checkpoints say the same name.
    assert set(IMAGE_MODELS) <= set(MODELS)
    assert {name: cls.kind for name, cls in classes.items()} == {name: name for name in IMAGE_MODELS}


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_contract_on_odd_sized_rgb_images(name, odd_images, tmp_path):
    # Arrange
    x, y = odd_images
    model = _tiny(name)
    labels = torch.tensor([0, 1, 2, 2, 1])

    # Act / Assert: sample before fit refuses.
    with pytest.raises(NotFittedError):
        model.sample(2)
    assert model.fit(x, conditions=y) is model
    a = model.sample(5, conditions=labels, generator=torch.Generator().manual_seed(1))
    b = model.sample(5, conditions=labels, generator=torch.Generator().manual_seed(1))
    c = model.sample(5, conditions=labels, generator=torch.Generator().manual_seed(2))
    model.save(tmp_path / name)
    loaded = type(model).load(tmp_path / name)
    d = loaded.sample(5, conditions=labels, generator=torch.Generator().manual_seed(1))

    # Assert
    assert a.shape == (5, 3, 13, 21)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a, d, atol=1e-5, rtol=0)


def test_bad_inputs_are_refused():
    # Arrange
    model = _tiny("image_vae")

    # Act / Assert
    with pytest.raises(InvalidInputError, match="channels"):
        model.fit(torch.rand(4, 8, 8))
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        model.fit(torch.rand(4, 1, 8, 8) * 255)


@pytest.mark.slow
def test_vae_interpolation_strip_has_the_asked_steps(odd_images):
    # Arrange
    x, y = odd_images
    model = _tiny("image_vae").fit(x, conditions=y)

    # Act
    strip = model.interpolate(x[0], 0, x[1], 1, steps=7)

    # Assert
    assert strip.shape == (7, 3, 13, 21)


def _conditional_accuracy(model, classifier, n_per_class: int = 50) -> float:
    labels = torch.arange(10).repeat_interleave(n_per_class)
    images = model.sample(len(labels), conditions=labels, generator=torch.Generator().manual_seed(7))
    _, predicted = predict_features(classifier, images)
    return float((predicted == labels.numpy()).mean())


@pytest.mark.slow
@pytest.mark.parametrize(("name", "epochs"), [("image_vae", 20), ("image_gan", 25)])
def test_conditional_samples_show_their_class(name, epochs, digits, digit_classifier):
    # Arrange
    train, holdout = digits
    holdout_accuracy = float((predict_features(digit_classifier, holdout.images)[1] == holdout.labels).mean())
    model = build_model(name, device="cpu", options={"epochs": epochs, "seed": 0})

    # Act
    model.fit(torch.from_numpy(train.images), conditions=torch.from_numpy(train.labels))
    accuracy = _conditional_accuracy(model, digit_classifier)

    # Assert
    assert holdout_accuracy > 0.93, "the judge itself must recognise real digits"
    assert accuracy >= 0.80


def test_unconditional_sampling_follows_the_class_prior(odd_images):
    # Arrange
    x, y = odd_images
    model = _tiny("image_augment").fit(x, conditions=y)

    # Act
    images = model.sample(300, generator=torch.Generator().manual_seed(0))

    # Assert
    assert images.shape == (300, 3, 13, 21)
    assert np.isfinite(images.numpy()).all()


@pytest.mark.parametrize("name", [pytest.param("image_vae", marks=pytest.mark.slow), "image_autoencoder"])
def test_image_scores_rank_inverted_digits_above_real_ones_in_any_batch(name, digits):
    # Arrange: a short fit on real digits; anomalies are held-out digits with their ink inverted
    from sklearn.metrics import roc_auc_score

    train, test = digits
    model = build_model(name, device="cpu", options={"epochs": 3, "base_channels": 8, "seed": 0})
    model.fit(train.images[:600], conditions=train.labels[:600])
    real, real_labels = torch.as_tensor(test.images[:150]).float(), torch.as_tensor(test.labels[:150]).long()
    images, labels = torch.cat([real, 1 - real]), torch.cat([real_labels, real_labels])
    is_anomaly = np.r_[np.zeros(len(real)), np.ones(len(real))]

    # Act
    labelled = model.anomaly_scores(images, labels)
    unlabelled = model.anomaly_scores(images)
    alone = model.anomaly_scores(images[:7], labels[:7])

    # Assert
    assert roc_auc_score(is_anomaly, labelled.score.numpy()) > 0.95
    assert roc_auc_score(is_anomaly, unlabelled.score.numpy()) > 0.95
    assert labelled.features.shape == (len(images), images[0].numel())
    torch.testing.assert_close(alone.score, labelled.score[:7], rtol=1e-5, atol=1e-4)  # no batch dependence
    # Mixing over classes adds the true class's term, weighted by its prior: never worse than prior times it.
    prior = torch.log(model.class_prior_.double())[labels]
    assert bool((unlabelled.score <= labelled.score - prior + 1e-6).all())
