"""Train an image model on the training split: the one step that wants a GPU (its task carries the `gpu` tag)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from prefect import task
from prefect.cache_policies import (
    NO_CACHE,  # inputs are image arrays and models: hashing them costs, and caching is keyed on content hashes later
)

from synthgate.models.image.common import EpochProgress, ImageModel
from synthgate.models.registry import build_model, image_model_names
from synthgate.schemas.errors import InvalidInputError
from synthgate.tasks.images.validate import ImageData

log = logging.getLogger(__name__)

PRIVATE_IMAGE_MODELS = ("vae", "gan", "autoencoder")  # the ones with a DP path (--epsilon); augment trains nothing


@dataclass
class FitResult:
    """A fitted model and what fitting it cost."""

    model: ImageModel
    name: str
    fit_seconds: float
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def privacy(self) -> dict[str, Any] | None:
        """The model's privacy report (spent epsilon, delta, noise, steps); None for a non-private fit."""
        return getattr(self.model, "privacy_", None)

    @property
    def seconds_per_epoch(self) -> float:
        return self.fit_seconds / max(self.epochs, 1)


def check_image_model(model: str) -> None:
    """Refuse a model name that is not an image family of the registry (the flow calls this before any work)."""
    if model not in image_model_names():
        raise InvalidInputError(f"unknown image model {model!r}; choose one of {', '.join(image_model_names())}")


def fit_image_model(
    train: ImageData,
    model: str,
    *,
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    options: dict[str, Any] | None = None,
    allow_flips: bool = False,
    epsilon: float | None = None,
    delta: float | None = None,
) -> FitResult:
    """Build `model` ("vae", "gan", "autoencoder" or "augment") from the registry and fit it on the training split.

    Args:
        train: validated training images; labels condition the model so it can sample any class.
        epochs: overrides the model's default epochs.
        seed: seeds network initialisation and the training shuffle.
        options: further config fields of the model (e.g. {"latent_dim": 32}).
        allow_flips: for "augment", whether horizontal flips keep labels for this data.
        epsilon, delta: a differential-privacy budget: DP-SGD (and DP-EM for the autoencoder's latent mixtures);
            the class list is taken as public, the class shares are not (the prior is uniform).
    """
    check_image_model(model)
    if epsilon is not None and model not in PRIVATE_IMAGE_MODELS:
        raise InvalidInputError(
            f"--epsilon needs a trained model ({', '.join(PRIVATE_IMAGE_MODELS)}); {model!r} transforms real images"
        )
    opts = {"seed": seed, "n_classes": train.schema.n_classes, **(options or {})}
    if epsilon is not None:
        from synthgate.models.privacy import check_budget, default_delta

        delta = delta if delta is not None else default_delta(len(train))
        check_budget(epsilon, delta, len(train))
        opts.update(epsilon=epsilon, delta=delta)
    if epochs is not None:
        opts["epochs"] = epochs
    if model == "augment" and allow_flips:
        opts["flip_horizontal"] = True
    net = build_model(f"image_{model}", device=device, options=opts)

    def progress(p: EpochProgress) -> None:
        log.debug(
            "%s epoch %d/%d loss %.4f (%.0f images/s, ETA %.0f s)",
            p.model,
            p.epoch,
            p.n_epochs,
            p.loss,
            p.images_per_s,
            p.eta_s,
        )

    t0 = time.perf_counter()
    net.fit(torch.from_numpy(train.images), conditions=torch.from_numpy(train.labels), progress=progress)
    seconds = time.perf_counter() - t0
    log.info("fitted %s on %d images in %.1f s", model, len(train), seconds)
    return FitResult(net, model, seconds, net.config.epochs, list(net.history_))


fit_image_model_task = task(name="fit-image-model", cache_policy=NO_CACHE)(fit_image_model)
