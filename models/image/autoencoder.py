"""Convolutional autoencoder with a per-class Gaussian mixture over its latent codes.

A deterministic autoencoder learns a compact code; a density fitted afterwards on the training codes turns it into a
generator (the "two-stage" recipe, cf. Ghosh et al. 2020, "From variational to deterministic autoencoders"). One
`models.gmm.GaussianMixture` per class (number of components by BIC) makes sampling class-conditional without
conditioning the networks, and keeps the latent density exact for small classes where a conditional VAE blurs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthgate.models.gmm import GaussianMixture, GMMConfig
from synthgate.models.image.common import ImageModel, ProgressCallback
from synthgate.models.image.nets import ConvDecoder, ConvEncoder

if TYPE_CHECKING:
    from synthgate.models.scoring import RowScores


@dataclass(frozen=True)
class ImageAutoencoderConfig:
    latent_dim: int = 12
    base_channels: int = 32
    epochs: int = 50
    batch_size: int = 64
    lr: float = 2e-3
    max_components: int = 4  # per-class mixture size cap; classes of a few hundred images rarely support more
    latent_noise: float = 0.05  # Gaussian noise on codes during training: a smoother decoder between training codes
    n_classes: int | None = None
    seed: int = 0
    # Differential privacy: DP-SGD on encoder and decoder with (1 - dp_mixture_share) of epsilon and delta, then one
    # DP-EM mixture per class (models/gmm_dp.py) on bounded codes with the rest. The classes split the images into
    # disjoint sets, so the per-class mixtures compose in parallel: each may spend the whole mixture share.
    epsilon: float | None = None
    delta: float | None = None  # None: 1 / (10 n), see models.privacy.default_delta
    max_grad_norm: float = 1.0  # per-sample clipping bound C
    dp_mixture_share: float = 0.2  # share of the budget for the latent mixtures
    dp_components: int = 1  # per-class components when private: a class of ~150 codes supports little more
    dp_em_iter: int = 1  # DP-EM iterations per class (with one component EM is exact after one)


class ImageAutoencoder(ImageModel):
    """Autoencoder + per-class latent GMM over (n, C, H, W) images in [0, 1].

    Attributes:
        latent_mean_, latent_scale_: (latent_dim,) standardisation of the codes before the mixtures see them.
        mixtures_: one fitted `GaussianMixture` per class (None for a class absent from training).
    """

    kind = "image_autoencoder"
    config_class = ImageAutoencoderConfig

    def _build(self) -> dict[str, nn.Module]:
        c, h, w = self.image_shape_
        cfg = self.config
        return {
            "encoder": ConvEncoder(c, h, w, cfg.latent_dim, base=cfg.base_channels),
            "decoder": ConvDecoder(cfg.latent_dim, c, h, w, base=cfg.base_channels),
        }

    def _train(self, x: Tensor, y: Tensor, generator: torch.Generator, progress: ProgressCallback | None) -> None:
        cfg, device = self.config, self.device_
        enc, dec = self.nets_["encoder"], self.nets_["decoder"]
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=cfg.lr)
        dp, delta = None, None
        if self.private:
            from synthgate.models.privacy import default_delta

            delta = cfg.delta or default_delta(len(x))
            sgd_eps = (1 - cfg.dp_mixture_share) * cfg.epsilon
            dp = self._make_private(self.nets_, opt, len(x), epsilon=sgd_eps, delta=(1 - cfg.dp_mixture_share) * delta)
            opt = dp.optimizer
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr / 20)
        xd = x.to(device)
        enc.train()
        dec.train()

        def step(idx: Tensor) -> dict[str, float]:
            xb = xd[idx]
            z = self._code(enc, xb)  # (b, d)
            z = z + cfg.latent_noise * self._noise(*z.shape, generator)
            loss = F.binary_cross_entropy_with_logits(dec(z), xb, reduction="sum") / len(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return {"loss": loss.item()}

        self._run_epochs(len(x), step, generator, progress, "loss", on_epoch_end=sched.step, privacy=dp)
        if dp is not None:
            self.nets_ = dict(dp.detach().items())
            enc, dec = self.nets_["encoder"], self.nets_["decoder"]
        enc.eval()
        with torch.no_grad():
            codes = torch.cat([self._code(enc, xd[i : i + 512]) for i in range(0, len(xd), 512)]).cpu()  # (n, d)
        if dp is not None:
            self._fit_private_mixtures(codes, y, delta * cfg.dp_mixture_share, dp.report())
            return
        self.latent_mean_ = codes.mean(0)
        self.latent_scale_ = codes.std(0).clamp_min(1e-6)
        z = (codes - self.latent_mean_) / self.latent_scale_
        gmm_config = GMMConfig(max_components=cfg.max_components, seed=cfg.seed)
        self.mixtures_ = []
        for k in range(self.n_classes_):
            zk = z[y == k]
            if len(zk) < 2:
                self.mixtures_.append(None)
                continue
            config = gmm_config if len(zk) >= 20 else replace(gmm_config, n_components=1)
            self.mixtures_.append(GaussianMixture(config, device="cpu").fit(zk))

    def _code(self, enc: nn.Module, x: Tensor) -> Tensor:
        """Latent codes; with epsilon squashed into (-2, 2) so the DP mixture's clipping bound is known in advance."""
        z = enc(x)  # (n, d)
        return 2 * torch.tanh(z / 2) if self.private else z

    def _fit_private_mixtures(self, codes: Tensor, y: Tensor, delta: float, sgd_report: dict) -> None:
        """One DP-EM mixture per class on the bounded codes, no standardisation (the codes' mean and scale are private).

        Every class gets a fit, even one with no images (noise only), so nothing branches on the class counts.
        """
        from synthgate.models.gmm_dp import DPGaussianMixture, DPGMMConfig

        cfg = self.config
        self.latent_mean_ = torch.zeros(cfg.latent_dim)
        self.latent_scale_ = torch.ones(cfg.latent_dim)
        eps = cfg.dp_mixture_share * cfg.epsilon
        gmm_config = DPGMMConfig(
            n_components=cfg.dp_components, max_iter=cfg.dp_em_iter, epsilon=eps, delta=delta, bound=2.0, seed=cfg.seed
        )
        self.mixtures_ = [
            DPGaussianMixture(gmm_config, device="cpu").fit(codes[y == k].double()) for k in range(self.n_classes_)
        ]
        spent = max(m.privacy_["epsilon"] for m in self.mixtures_)  # disjoint classes: parallel composition
        self.privacy_ = {
            **sgd_report,
            "epsilon": round(sgd_report["epsilon"] + spent, 4),
            "delta": sgd_report["delta"] + delta,
            "target_epsilon": cfg.epsilon,
            "sgd_epsilon": sgd_report["epsilon"],
            "mixture_epsilon": round(spent, 4),
            "mixture": "DP-EM per class (models/gmm_dp.py), parallel composition over disjoint classes",
        }

    def _sample(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        z = torch.empty(len(labels), self.config.latent_dim)
        cpu_gen = generator  # the mixtures live on the CPU; derive a CPU stream from a CUDA generator deterministically
        if generator.device.type != "cpu":
            seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
            cpu_gen = torch.Generator().manual_seed(seed)
        for k in labels.unique().tolist():
            mask = labels == k
            if self.mixtures_[k] is None:
                raise ValueError(f"class {k} had fewer than 2 training images; it cannot be sampled")
            z[mask] = self.mixtures_[k].sample(int(mask.sum()), generator=cpu_gen).float()
        z = z * self.latent_scale_ + self.latent_mean_  # (n, d) back to code units
        return torch.sigmoid(self.nets_["decoder"](z.to(self.device_)))

    def anomaly_scores(self, images: Tensor, labels: Tensor | None = None) -> RowScores:
        """Per-image reconstruction cross-entropy plus -log latent density, and per-pixel parts
        (`models.image.scoring`); without labels, mixed over the training classes."""
        from synthgate.models.image.scoring import image_autoencoder_scores

        return image_autoencoder_scores(self, images, labels)

    def _extra_state(self) -> dict[str, Tensor]:
        return {"latent_mean": self.latent_mean_, "latent_scale": self.latent_scale_}

    def _set_extra_state(self, state: dict[str, Tensor]) -> None:
        self.latent_mean_ = state["latent_mean"].cpu()
        self.latent_scale_ = state["latent_scale"].cpu()

    def save(self, directory: Path) -> None:
        """The networks as every image model saves them, plus one sub-folder per class mixture."""
        super().save(directory)
        present = [k for k, m in enumerate(self.mixtures_) if m is not None]
        for k in present:
            self.mixtures_[k].save(Path(directory) / f"mixture_{k}")
        (Path(directory) / "mixtures.json").write_text(json.dumps({"classes": present}))

    @classmethod
    def load(cls, directory: Path, *, device: torch.device | str = "cpu") -> Self:
        model = super().load(directory, device=device)
        present = set(json.loads((Path(directory) / "mixtures.json").read_text())["classes"])
        mixture_cls = GaussianMixture
        if model.private:
            from synthgate.models.gmm_dp import DPGaussianMixture as mixture_cls
        model.mixtures_ = [
            mixture_cls.load(Path(directory) / f"mixture_{k}") if k in present else None
            for k in range(model.n_classes_)
        ]
        return model
