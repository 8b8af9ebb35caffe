"""The one place that names the models (`--model gmm`) and says where each class lives.

An explicit dict of import paths rather than entry points or import-time registration: a reader finds every model
here, an unknown name fails with the list of known ones, and naming the models imports neither torch nor a model
module (`synthgate --help` and `RunRequest` validation read the names; only `get_model` imports the class).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthgate.schemas.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

    from synthgate.models.base import GenerativeModel
    from synthgate.models.encoders.table import Span

# The table families: what `--model` offers and what `auto` tries, in this order.
TABLE_MODELS: dict[str, str] = {
    "gmm": "synthgate.models.gmm:GaussianMixture",
    "arn": "synthgate.models.arn:ARN",
    "cart": "synthgate.models.cart:CART",
    "vae": "synthgate.models.vae:VAE",
    "gan": "synthgate.models.gan:GAN",
    "autoencoder": "synthgate.models.autoencoder:Autoencoder",
    "marginal": "synthgate.models.marginal:MarginalModel",
}
# Families `--model` offers that `auto` does not try (docs/decisions.md#cart-family).
NOT_IN_AUTO: frozenset[str] = frozenset({"marginal"})
# A family whose private training is another class: `--model gmm --epsilon E` trains `gmm_dp` (DP-EM). The other
# table families take `epsilon` in their own config.
PRIVATE_VARIANTS: dict[str, str] = {"gmm": "gmm_dp"}
# `--model auto --epsilon E`: the marginal family up to this many training rows (where select-measure-generate beats
# DP-SGD), the vae's DP-SGD above it (docs/decisions.md#private-auto).
PRIVATE_AUTO_MAX_ROWS = 100_000
# Image families, by their `synthgate images --model` name.
IMAGE_MODELS: dict[str, str] = {
    "vae": "synthgate.models.image.vae:ImageVAE",
    "gan": "synthgate.models.image.gan:ImageGAN",
    "autoencoder": "synthgate.models.image.autoencoder:ImageAutoencoder",
    "augment": "synthgate.models.image.augment:ImageAugment",
}
# Every class `get_model` can return, by registry name.
MODELS: dict[str, str] = {
    **TABLE_MODELS,
    "gmm_dp": "synthgate.models.gmm_dp:DPGaussianMixture",
    **{f"image_{name}": path for name, path in IMAGE_MODELS.items()},
}


def model_names() -> list[str]:
    """The table families a run may name (`--model`), without `auto` and without private variants."""
    return list(TABLE_MODELS)


def auto_candidate_names() -> list[str]:
    """The table families `--model auto` tries, in registry order."""
    return [name for name in TABLE_MODELS if name not in NOT_IN_AUTO]


def image_model_names() -> list[str]:
    """The image families `synthgate images --model` may name."""
    return list(IMAGE_MODELS)


def private_name(name: str) -> str:
    """The registry name trained for family `name` under a privacy budget (`gmm` -> `gmm_dp`)."""
    return PRIVATE_VARIANTS.get(name, name)


def private_auto(n_rows: int) -> str:
    """The family `auto` trains under a privacy budget for a table of `n_rows` training rows."""
    return "marginal" if n_rows <= PRIVATE_AUTO_MAX_ROWS else "vae"


def get_model(name: str) -> type:
    """The class of model `name`, imported on first use.

    Raises:
        InvalidInputError: `name` is not a registered model.
    """
    if name not in MODELS:
        raise InvalidInputError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")
    module, _, attribute = MODELS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def config_class(name: str) -> type:
    """The config dataclass of model `name`."""
    return get_model(name).config_class


def normalization_for(name: str) -> str:
    """How `TableEncoder` encodes continuous columns for model `name`: its class's `normalization`, else
    "standard" (see `GenerativeModel`)."""
    return getattr(get_model(name), "normalization", "standard")


def supports_privacy(name: str) -> bool:
    """Whether table family `name` has a private training path (its config, or its private variant's, takes
    `epsilon`)."""
    return "epsilon" in config_class(private_name(name)).__dataclass_fields__


def build_model(
    name: str,
    *,
    spans: list[Span] | None = None,
    device: torch.device | str | None = None,
    options: dict[str, Any] | None = None,
) -> GenerativeModel:
    """Instantiate model `name` with `options` as its config fields; unknown names or options fail clearly."""
    cls = get_model(name)
    try:
        config = cls.config_class(**(options or {}))
    except TypeError as exc:
        fields = sorted(cls.config_class.__dataclass_fields__)
        raise InvalidInputError(f"bad options for model {name!r}: {exc}; valid options are {fields}") from exc
    return cls(config, spans=spans, device=device)


def load_model(name: str, directory: Path, *, device: torch.device | str = "cpu") -> GenerativeModel:
    """Load a model of registry name `name` saved by its `save`."""
    return get_model(name).load(directory, device=device)
