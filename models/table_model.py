"""`TableModel`: what the neural table models (vae, autoencoder, gan) share, written once.

The skeleton is SDV's `BaseSynthesizer` in torch: the public `fit` checks the rows, picks the device, seeds the fit
and builds the networks, then calls the family's `_fit`; `save` and `load` write and read the one checkpoint format
(`models.base.save_checkpoint`: config.json, state.pt read with `weights_only=True`, meta.json) and ask the family only
for its tensors. Optimisers, DP-SGD, the hand-written gradients switch and the training loop (`models.training.train`:
device-resident batches, autocast on CUDA, early stopping with the best epoch restored, progress) are helpers here, so
a family's `_fit` is its step and its evaluation, nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from synthgate.models import base
from synthgate.models.backprop import supports_hand_backprop
from synthgate.models.encoders.table import Span
from synthgate.models.layout import SpanLayout, spans_from_meta, spans_to_meta
from synthgate.models.optim import adam
from synthgate.models.privacy import PrivateTraining, default_delta, index_loader, make_private
from synthgate.models.training import History, Progress, seeded, train


class PrivateDefaults:
    """Mixin for a model config whose private training wants other settings (`PRIVATE`), chosen once, here.

    With `epsilon` set, every field named in `PRIVATE` that still holds its declared default takes the private value
    instead, so `GAN(GANConfig(epsilon=3))` trains as `synthgate run --model gan --epsilon 3` does, and a value the
    caller gave differently from the default wins. See docs/decisions.md#dp-defaults.
    """

    PRIVATE: ClassVar[dict[str, Any]] = {}

    def resolved(self) -> Self:
        """This config, with the private settings applied when `epsilon` is set (itself otherwise)."""
        if getattr(self, "epsilon", None) is None or not self.PRIVATE:
            return self
        defaults = {f.name: f.default for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        changes = {k: v for k, v in self.PRIVATE.items() if getattr(self, k) == defaults[k]}
        return dataclasses.replace(self, **changes) if changes else self  # type: ignore[type-var]


class TableModel:
    """Base of the neural table models: the sklearn contract, the fit skeleton, the checkpoint format.

    A family sets `kind` (its registry name and checkpoint kind) and `config_class`, and writes `_build` (networks for
    `n_features` encoded features), `_fit` (training, inside the seeded fit), `_state` / `_load_state` (its tensors),
    and `sample`.

    Args:
        config: hyperparameters; `config_class()` when omitted.
        spans: the encoder's spans (which features are values, one-hots or flags); all values when omitted.
        device: "auto"/None for CUDA when present, else CPU.

    Attributes:
        history_: the training `History` (losses per epoch, best epoch, seconds).
        n_features_in_: width of the encoded rows seen in `fit`.
        device_: where the fitted networks live (sampling generators are made there).
        layout_: the `SpanLayout` of the encoded rows.
        privacy_: the spent budget after a private fit, else None.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type]
    supports_conditions: ClassVar[bool] = False  # the task layer filters sampled rows for the others
    normalization: ClassVar[str] = "standard"  # how the flow's `TableEncoder` encodes continuous columns for it

    def __init__(self, config: Any = None, *, spans: list[Span] | None = None, device: Any = None):
        self.config = config
        self.spans = spans
        self.device = device
        self.n_features_in_: int | None = None

    # ------------------------------------------------------------------------------------------------- config
    @property
    def cfg(self) -> Any:
        """The config in force: the given one (or the default), with its private settings under a budget."""
        cached = self.__dict__.get("_cfg")
        if cached is None or cached[0] is not self.config:
            cached = (self.config, (self.config or self.config_class()).resolved())
            self._cfg = cached
        return cached[1]

    @property
    def private(self) -> bool:
        """Whether the fit is differentially private (the config carries an epsilon)."""
        return self.cfg.epsilon is not None

    # -------------------------------------------------------------------------------------------------- fitting
    def fit(
        self, x: Tensor, *, conditions: Tensor | None = None, progress: Callable[[Progress], None] | None = None
    ) -> Self:
        """Train on encoded rows `x` (n, n_features); conditions at fit time are not used.

        Args:
            progress: called after every epoch with a `Progress` (see `models.training.train`).
        """
        cfg = self.cfg
        device = base.resolve_device(self.device)
        x = base.to_device(base.check_matrix(x), device)  # (n, d), moved once
        self._check_rows(x)
        self.privacy_: dict[str, Any] | None = None
        with seeded(cfg.seed, device):
            generator = base.make_generator(cfg.seed, device)
            self._setup(x.shape[1], device)
            self._fit(x, generator, progress)
        self.n_features_in_ = x.shape[1]
        return self

    def _setup(self, n_features: int, device: torch.device) -> None:
        """The span layout of `n_features` encoded features on `device`, then the family's networks (`_build`)."""
        self.device_ = device
        self.layout_ = SpanLayout(self.spans, n_features, device)
        self._build(n_features, device)

    def _check_rows(self, x: Tensor) -> None:
        """Refuse training rows the family cannot learn from (before any work)."""

    def _build(self, n_features: int, device: torch.device) -> None:
        raise NotImplementedError

    def _fit(self, x: Tensor, generator: torch.Generator, progress: Callable[[Progress], None] | None) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------- helpers for `_fit`
    def _optimizer(self, params: Any, *, lr: float, private: bool | None = None, **kwargs: Any) -> torch.optim.Adam:
        """Adam for `params`: the fused kernel, or the plain one Opacus wraps when the networks train privately."""
        return adam(params, lr=lr, private=self.private if private is None else private, **kwargs)

    def _make_private(
        self, module: nn.Module, optimizer: torch.optim.Optimizer, n_rows: int, *, share: float = 1.0
    ) -> PrivateTraining:
        """DP-SGD (`models.privacy`) of `module` over `n_rows` rows with `share` of the config's epsilon and delta."""
        cfg = self.cfg
        return make_private(
            module,
            optimizer,
            index_loader(n_rows, cfg.batch_size),
            epsilon=share * cfg.epsilon,
            delta=share * (cfg.delta or default_delta(n_rows)),
            epochs=cfg.epochs,
            max_grad_norm=cfg.max_grad_norm,
            noise_decay=getattr(cfg, "noise_decay", 1.0),
        )

    def _hand_backprop(self, device: torch.device, *networks: nn.Module) -> bool:
        """Whether steps use the hand-written gradients (`models.backprop`): when `hand_backprop` is on, on CPU,
        without DP-SGD (Opacus hooks autograd) and for networks it covers; autograd otherwise (and on CUDA, under
        autocast)."""
        return (
            self.cfg.hand_backprop
            and device.type == "cpu"
            and not self.private
            and all(map(supports_hand_backprop, networks))
        )

    def _train(self, step: Callable[[Tensor | None], Tensor], x: Tensor, **kwargs: Any) -> History:
        """`models.training.train` with this model's epochs and name; early stopping off under DP-SGD (the
        validation rows are private)."""
        cfg = self.cfg
        if self.private:
            kwargs["patience"] = None
        self.history_ = train(step, x, epochs=cfg.epochs, name=self.kind, **kwargs)
        return self.history_

    def _train_module(
        self,
        step: Callable[[Tensor | None], Tensor],
        evaluate: Callable[[slice], Tensor],
        x: Tensor,
        generator: torch.Generator,
        *,
        rows: Tensor | None,
        x_val: Tensor | None,
        privacy: PrivateTraining | None,
        progress: Callable[[Progress], None] | None,
    ) -> History:
        """`_train` of an encoder-decoder's one network (`module_`), steps given row indices, early stopping on
        `x_val` after `patience` epochs without a better `evaluate`."""
        return self._train(
            step, x, rows=rows, modules={self.kind: self.module_}, batch_size=self.cfg.batch_size,
            generator=generator, evaluate=evaluate, x_val=x_val, patience=self.cfg.patience, progress=progress,
            privacy=privacy, indices=True,
        )  # fmt: skip

    # ---------------------------------------------------------------------------------------------- persistence
    def _state(self) -> dict[str, Tensor]:
        raise NotImplementedError

    def _load_state(self, state: dict[str, Tensor], meta: dict[str, Any], directory: Path) -> None:
        raise NotImplementedError

    @classmethod
    def _saved_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """A saved config as today's fields read it (defaults for options added since); as saved by default."""
        return config

    def save(self, directory: Path) -> None:
        """Write the checkpoint (config.json, state.pt, meta.json): the model is rebuilt on load, never unpickled."""
        base.require_fitted(self)
        h = getattr(self, "history_", None)
        meta = {
            "n_features_in": self.n_features_in_,
            "spans": spans_to_meta(self.spans),
            "packed_output": True,
            **({"epochs_run": h.epochs_run, "best_epoch": h.best_epoch, "fit_seconds": h.seconds} if h else {}),
            **({"privacy": self.privacy_} if getattr(self, "privacy_", None) else {}),
        }
        base.save_checkpoint(directory, kind=self.kind, config=self.cfg, state=self._state(), meta=meta)
        self._save_extra(Path(directory))

    def _save_extra(self, directory: Path) -> None:
        """Anything beside the tensors (the autoencoder's latent mixture has its own checkpoint)."""

    @classmethod
    def load(cls, directory: Path, *, device: torch.device | str = "cpu") -> Self:
        """Rebuild a saved model on `device`."""
        config, state, meta = base.load_checkpoint(directory, device=device)
        config = base.config_from_dict(cls.config_class, cls._saved_config(config))
        model = cls(config, spans=spans_from_meta(meta["spans"]), device=device)
        model._setup(meta["n_features_in"], base.resolve_device(device))
        model._load_state(state, meta, Path(directory))
        model.privacy_ = meta.get("privacy")
        model.n_features_in_ = meta["n_features_in"]
        return model
