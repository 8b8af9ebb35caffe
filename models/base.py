"""The model protocol every generative model follows, and the small helpers they share.

The contract is scikit-learn's, in torch: `__init__` only stores its arguments, `fit` returns `self` and sets state
ending in `_`, `sample` refuses to run before `fit`, and randomness comes in as a `torch.Generator` so that two calls
to `sample` draw different rows while a seeded run stays reproducible.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import torch
from torch import Tensor

from synthgate.schemas.errors import InvalidInputError, NotFittedError

FORMAT_VERSION = 1


@runtime_checkable
class GenerativeModel(Protocol):
    """What the pipeline needs from a model; see `models.registry` for the implementations.

    A class may set `normalization` ("standard", "mode" or "mode_bic") to say how `TableEncoder` should encode
    continuous columns for it; the flow reads it through `models.registry.normalization_for`. The vae asks for "mode":
    per-mode offsets plus a mode one-hot, which its output heads fit better than one z-score of a multi-modal column;
    the gan for "mode_bic", the same with overlapping modes merged while BIC falls. The gmm and the autoencoder keep
    z-scores (docs/decisions.md#normalization-per-model).
    """

    def fit(self, x: Tensor, *, conditions: Tensor | None = None) -> Self: ...

    def sample(
        self, n: int, *, conditions: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path, *, device: torch.device | str = "cpu") -> Self: ...


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`None`/"auto" picks CUDA when present, else CPU; "cuda:1" or a `torch.device` is taken as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(
            f"device {device} was requested but CUDA is not available here; use --device cpu or auto"
        )
    return device


def to_device(x: Tensor, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """Copy training rows to `device` once for the whole fit; on CUDA through pinned memory, without blocking the host."""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device=device, non_blocking=True).to(dtype)
    return x.to(device=device, dtype=dtype)


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on `device`, seeded when `seed` is given (the task boundary turns seeds into generators)."""
    gen = torch.Generator(device=torch.device(device))
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def require_fitted(model: Any, attribute: str = "n_features_in_") -> None:
    """Raise `NotFittedError` unless `fit` has run (sklearn's `check_is_fitted`)."""
    if getattr(model, attribute, None) is None:
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; call fit(data) before using it")


def _all_finite(x: Tensor) -> bool:
    """Whether `x` has no NaN or infinity. A sum is NaN or infinite when any entry is (or when finite entries
    overflow, rare, and then the exact test decides): one reduction instead of a boolean tensor of the input's size.
    The sum stays in the input's dtype: `sum(dtype=float64)` converts a float64 copy of the whole input first."""
    if not x.is_floating_point():
        return True
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def check_matrix(x: Tensor, name: str = "x") -> Tensor:
    """Models take a 2-D float tensor with no NaN (the encoder guarantees it; users calling models directly may not)."""
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InvalidInputError(f"{name} must be a non-empty 2-D tensor (rows, features), got shape {tuple(x.shape)}")
    if not _all_finite(x):
        raise InvalidInputError(f"{name} contains NaN or infinite values; encode the table with TableEncoder first")
    return x.float()


def config_to_dict(config: Any) -> dict[str, Any]:
    return asdict(config) if is_dataclass(config) else dict(config)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def save_checkpoint(directory: Path, *, kind: str, config: Any, state: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Write `config.json`, `state.pt` (tensors only) and `meta.json`: the model is rebuilt, never unpickled."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({"kind": kind, **config_to_dict(config)}, indent=2))
    torch.save({k: v.detach().cpu() for k, v in state.items()}, directory / "state.pt")
    (directory / "meta.json").write_text(json.dumps({"format_version": FORMAT_VERSION, **meta}, indent=2, default=str))


def load_checkpoint(directory: Path, *, device: torch.device | str = "cpu") -> tuple[dict, dict[str, Tensor], dict]:
    directory = Path(directory)
    if not (directory / "state.pt").exists():
        raise InvalidInputError(f"{directory}: no saved model here (state.pt missing)")
    config = json.loads((directory / "config.json").read_text())
    state = torch.load(directory / "state.pt", weights_only=True, map_location=device)
    meta = json.loads((directory / "meta.json").read_text())
    return config, state, meta
