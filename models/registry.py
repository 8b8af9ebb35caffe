"""The one place that maps a model name (`--model gmm`) to its class and config.

An explicit dict rather than entry-point magic: a reader finds every model here, and an unknown name fails with the
list of known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from synthgate.models.base import GenerativeModel
from synthgate.models.encoders.table import Span
from synthgate.schemas.errors import InvalidInputError

# name -> (model class, config dataclass); filled below, one line per model.
MODELS: dict[str, tuple[type, type]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: `@register("gmm")` on a model whose `config_class` attribute names its config dataclass."""

    def wrap(cls: type) -> type:
        MODELS[name] = (cls, cls.config_class)
        return cls

    return wrap


def _load_builtin_models() -> None:
    # Imported for their @register side effect; kept in one function so the list of families is in one place.
    import synthgate.models.gmm  # noqa: F401

    for optional in (
        "synthgate.models.gmm_dp",
        "synthgate.models.vae",
        "synthgate.models.gan",
        "synthgate.models.autoencoder",
        "synthgate.models.image",
        "synthgate.models.arn",
    ):
        try:
            __import__(optional)
        except ModuleNotFoundError as exc:  # a family still being written is simply not offered
            if exc.name != optional:
                raise


def model_names() -> list[str]:
    _load_builtin_models()
    return sorted(MODELS)


def normalization_for(name: str) -> str:
    """How `TableEncoder` encodes continuous columns for model `name`: its class's `normalization` ("mode" for the
    vae and the gan), else "standard" (see `GenerativeModel`)."""
    _load_builtin_models()
    return getattr(MODELS[name][0], "normalization", "standard")


def build_model(
    name: str,
    *,
    spans: list[Span] | None = None,
    device: torch.device | str | None = None,
    options: dict[str, Any] | None = None,
) -> GenerativeModel:
    """Instantiate model `name` with `options` as its config fields; unknown names or options fail clearly."""
    _load_builtin_models()
    if name not in MODELS:
        raise InvalidInputError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    cls, config_cls = MODELS[name]
    try:
        config = config_cls(**(options or {}))
    except TypeError as exc:
        fields = sorted(config_cls.__dataclass_fields__)
        raise InvalidInputError(f"bad options for model {name!r}: {exc}; valid options are {fields}") from exc
    return cls(config, spans=spans, device=device)


def load_model(name: str, directory, *, device: torch.device | str = "cpu") -> GenerativeModel:
    _load_builtin_models()
    if name not in MODELS:
        raise InvalidInputError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name][0].load(directory, device=device)
