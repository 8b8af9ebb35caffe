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
from typing import Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.gmm import GaussianMixture, GMMConfig
from models.image.common import ImageModel, ProgressCallback
from models.image.nets import ConvDecoder, ConvEncoder
from models.registry import register


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


@register("image_autoencoder")
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
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr / 20)
        xd = x.to(device)
        enc.train()
        dec.train()

        def step(idx: Tensor) -> dict[str, float]:
            xb = xd[idx]
            z = enc(xb)  # (b, d)
            z = z + cfg.latent_noise * self._noise(*z.shape, generator)
            loss = F.binary_cross_entropy_with_logits(dec(z), xb, reduction="sum") / len(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return {"loss": loss.item()}

        self._run_epochs(len(x), step, generator, progress, "loss", on_epoch_end=sched.step)
        enc.eval()
        with torch.no_grad():
            codes = torch.cat([enc(xd[i : i + 512]) for i in range(0, len(xd), 512)]).cpu()  # (n, d)
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
        model.mixtures_ = [
            GaussianMixture.load(Path(directory) / f"mixture_{k}") if k in present else None
            for k in range(model.n_classes_)
        ]
        return model
