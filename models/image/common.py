"""What the image models share: input checks, the class prior, the epoch loop with progress, save and load.

Every image model takes (n, C, H, W) float tensors in [0, 1] and (n,) integer class labels as `conditions`; it samples
the same layout. `ImageModel` holds the sklearn-style contract once (`__init__` stores, `fit` returns self and sets
`_`-suffixed state, `sample` refuses before `fit`) so each family only writes `_build`, `_train` and `_sample`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from synthgate.models import base
from synthgate.models.privacy import PrivateTraining
from synthgate.models.training import Progress, log_due, log_epoch, memory_batch_size
from synthgate.schemas.errors import InvalidInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochProgress:
    """One finished epoch: what a progress bar or a Prefect log line needs."""

    model: str
    epoch: int  # 1-based
    n_epochs: int
    loss: float  # mean training loss of the epoch (the model's main objective)
    images_per_s: float
    eta_s: float
    losses: dict[str, float]  # every loss term, averaged over the epoch


ProgressCallback = Callable[[EpochProgress], None]


def check_images(x: Tensor, name: str = "x") -> Tensor:
    """A non-empty (n, C, H, W) float tensor with C in {1, 3} and values in [0, 1]; errors say what to do."""
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x)
    if x.ndim != 4 or x.shape[0] == 0 or x.shape[1] not in (1, 3):
        raise InvalidInputError(
            f"{name} must be a (n, channels, height, width) tensor with 1 or 3 channels, got shape {tuple(x.shape)}"
        )
    x = x.float()
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise InvalidInputError(f"{name} must hold finite pixel values in [0, 1]; scale images (e.g. uint8 / 255)")
    return x


def check_labels(labels: Tensor | None, n: int, n_classes: int | None = None, name: str = "conditions") -> Tensor:
    """(n,) int64 class labels; `None` means one class (0) for all. Labels outside [0, n_classes) are refused."""
    if labels is None:
        return torch.zeros(n, dtype=torch.long)
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise InvalidInputError(f"{name} must be a 1-D tensor of {n} class labels, got shape {tuple(labels.shape)}")
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise InvalidInputError(f"{name} must hold integer class labels")
    labels = labels.long()
    if labels.min() < 0 or (n_classes is not None and labels.max() >= n_classes):
        raise InvalidInputError(
            f"{name} must lie in [0, {n_classes}); got {labels.min().item()}..{labels.max().item()}"
        )
    return labels


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Shuffled index batches of one epoch (the last may be smaller; a lone row is dropped: norms need >1 value)."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) > 1 or n == 1:
            yield idx


class ImageModel:
    """Shared skeleton of the image models; subclasses set `kind`, `config_class` and the three hooks.

    Attributes:
        image_shape_: (C, H, W) of the training images.
        n_classes_: number of classes the model can be conditioned on.
        class_prior_: (n_classes,) training class shares, used when `sample` gets no conditions.
        nets_: the fitted networks by name.
        history_: one dict of mean losses per epoch.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, config: Any = None, *, spans: Any = None, device: torch.device | str | None = None):
        self.config = config if config is not None else self.config_class()
        self.spans = spans  # unused by image models; accepted so `build_model` treats every family alike
        self.device = device
        self.image_shape_: tuple[int, int, int] | None = None
        self.n_classes_: int | None = None
        self.class_prior_: Tensor | None = None
        self.nets_: dict[str, nn.Module] = {}
        self.history_: list[dict[str, float]] = []
        self.privacy_: dict[str, Any] | None = None

    # -- hooks -------------------------------------------------------------------------------------------------------
    def _build(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _train(self, x: Tensor, y: Tensor, generator: torch.Generator, progress: ProgressCallback | None) -> None:
        raise NotImplementedError

    def _sample(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Tensor]:
        return {}

    def _set_extra_state(self, state: dict[str, Tensor]) -> None:
        return None

    # -- public contract ---------------------------------------------------------------------------------------------
    @property
    def private(self) -> bool:
        """Whether this fit is differentially private (the config carries an epsilon)."""
        return getattr(self.config, "epsilon", None) is not None

    def fit(self, x: Tensor, *, conditions: Tensor | None = None, progress: ProgressCallback | None = None) -> Self:
        """Train on (n, C, H, W) images in [0, 1] with optional (n,) class labels; returns self.

        Refitting replaces all earlier state. Networks are initialised from `config.seed` inside a forked RNG, so a
        fit is reproducible and leaves the global torch RNG alone.

        With `config.epsilon` the fit is differentially private (DP-SGD, `models.privacy`): the class prior is uniform
        over the public class list (`config.n_classes`, the run's class names) instead of the private class shares,
        and `privacy_` holds the spent budget.
        """
        x = check_images(x)
        y = check_labels(conditions, x.shape[0])
        device = base.resolve_device(self.device)
        self.device_ = device
        self.image_shape_ = tuple(int(s) for s in x.shape[1:])
        n_classes = max(int(y.max()) + 1, getattr(self.config, "n_classes", None) or 0)
        self.n_classes_ = n_classes
        if self.private:  # the class shares are private; the class list is not (it names the classes asked for)
            self.class_prior_ = torch.full((n_classes,), 1.0 / n_classes)
        else:
            self.class_prior_ = torch.bincount(y, minlength=n_classes).float() / len(y)
        self.history_ = []
        self.privacy_: dict[str, Any] | None = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.nets_ = {name: net.to(device) for name, net in self._build().items()}
        self._train(x, y, base.make_generator(self.config.seed), progress)
        for net in self.nets_.values():
            net.eval()
        return self

    @torch.no_grad()
    def sample(self, n: int, *, conditions: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """`n` images (n, C, H, W) in [0, 1] on the CPU; `conditions` are (n,) class labels, else drawn from the prior."""
        base.require_fitted(self, "image_shape_")
        generator = generator if generator is not None else base.make_generator(None)
        if conditions is None:
            labels = torch.multinomial(self.class_prior_, n, replacement=True, generator=generator)
        else:
            labels = check_labels(conditions, n, self.n_classes_)
        if n == 0:
            return torch.zeros(0, *self.image_shape_)
        out = self._sample(labels, generator)  # (n, C, H, W)
        return out.clamp(0, 1).cpu()

    def save(self, directory: Path) -> None:
        base.require_fitted(self, "image_shape_")
        state = {f"{name}.{k}": v for name, net in self.nets_.items() for k, v in net.state_dict().items()}
        state["class_prior"] = self.class_prior_
        state.update({f"extra.{k}": v for k, v in self._extra_state().items()})
        meta = {"image_shape": list(self.image_shape_), "n_classes": self.n_classes_, "history": self.history_}
        if getattr(self, "privacy_", None):
            meta["privacy"] = self.privacy_
        base.save_checkpoint(Path(directory), kind=self.kind, config=self.config, state=state, meta=meta)

    @classmethod
    def load(cls, directory: Path, *, device: torch.device | str = "cpu") -> Self:
        config, state, meta = base.load_checkpoint(Path(directory), device=device)
        if config.get("kind") != cls.kind:
            raise InvalidInputError(f"{directory}: holds a {config.get('kind')!r} model, not {cls.kind!r}")
        model = cls(base.config_from_dict(cls.config_class, config), device=device)
        model.device_ = torch.device(device)
        model.image_shape_ = tuple(meta["image_shape"])
        model.n_classes_ = int(meta["n_classes"])
        model.history_ = meta.get("history", [])
        model.privacy_ = meta.get("privacy")
        model.class_prior_ = state["class_prior"].cpu()
        model.nets_ = {name: net.to(device) for name, net in model._build().items()}
        for name, net in model.nets_.items():
            prefix = f"{name}."
            net.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
            net.eval()
        model._set_extra_state({k[len("extra.") :]: v for k, v in state.items() if k.startswith("extra.")})
        return model

    # -- helpers for subclasses --------------------------------------------------------------------------------------
    def _noise(self, n: int, dim: int, generator: torch.Generator) -> Tensor:
        """(n, dim) standard normal noise from `generator`, moved to the model's device."""
        return torch.randn(n, dim, generator=generator, device=generator.device).to(self.device_)

    def _make_private(
        self,
        nets: dict[str, nn.Module],
        optimizer: torch.optim.Optimizer,
        n_rows: int,
        *,
        epsilon: float | None = None,
        delta: float | None = None,
    ) -> PrivateTraining:
        """DP-SGD over `nets` (every network that sees real images) for `config.epochs` Poisson-sampled epochs.

        The networks are wrapped together so one accountant covers them; calling each network directly still records
        per-sample gradients (Opacus hooks sit on the layers). `epsilon` and `delta` default to the config's (a model
        that spends part of its budget elsewhere passes its DP-SGD share).
        """
        from synthgate.models.privacy import default_delta, index_loader, make_private

        cfg = self.config
        if delta is None:
            delta = getattr(cfg, "delta", None) or default_delta(n_rows)
        return make_private(
            nn.ModuleDict(nets),
            optimizer,
            index_loader(n_rows, cfg.batch_size),
            epsilon=cfg.epsilon if epsilon is None else epsilon,
            delta=delta,
            epochs=cfg.epochs,
            max_grad_norm=cfg.max_grad_norm,
        )

    def _run_epochs(
        self,
        n_rows: int,
        step: Callable[[Tensor], dict[str, float]],
        generator: torch.Generator,
        progress: ProgressCallback | None,
        main_loss: str,
        on_epoch_end: Callable[[], None] | None = None,
        privacy: PrivateTraining | None = None,
    ) -> None:
        """Run `config.epochs` epochs of `step(batch_indices) -> losses`, reporting each epoch.

        Without `privacy` an epoch is a shuffled pass; with it, the Poisson-sampled batches the accountant assumes,
        and training stops if the accountant ever reports more than the target epsilon.
        """
        n_epochs, started = self.config.epochs, time.perf_counter()
        pixels = math.prod(self.image_shape_ or (1,))  # values per image: the batch shrinks if memory is short
        batch = memory_batch_size(self.config.batch_size, pixels, torch.device(self.device_))
        for epoch in range(1, n_epochs + 1):
            t0 = time.perf_counter()
            sums: dict[str, float] = {}
            n_batches = 0
            batches = minibatches(n_rows, batch, generator) if privacy is None else privacy.batches()
            for idx in batches:
                for key, value in step(idx).items():
                    sums[key] = sums.get(key, 0.0) + value
                n_batches += 1
            if on_epoch_end is not None:
                on_epoch_end()
            losses = {k: v / max(n_batches, 1) for k, v in sums.items()}
            self.history_.append(losses)
            elapsed = time.perf_counter() - started
            report = EpochProgress(
                model=self.kind,
                epoch=epoch,
                n_epochs=n_epochs,
                loss=losses.get(main_loss, float("nan")),
                images_per_s=n_rows / max(time.perf_counter() - t0, 1e-9),
                eta_s=elapsed / epoch * (n_epochs - epoch),
                losses=losses,
            )
            if log_due(epoch, n_epochs):
                line = Progress(epoch, n_epochs, report.loss, None, report.images_per_s, report.eta_s)
                log_epoch(self.kind, line, unit="images")
            if progress is not None:
                progress(report)
            if privacy is not None and privacy.spent_epsilon() > privacy.epsilon * (1 + 1e-6):
                log.warning("%s: privacy budget %.3g spent at epoch %d: stopping", self.kind, privacy.epsilon, epoch)
                break
