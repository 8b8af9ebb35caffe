"""Class-conditional convolutional VAE (Kingma & Welling 2014; conditional form: Sohn et al. 2015).

The encoder sees the image and its class (as constant channels); the decoder sees the latent code and the class, so
`sample(n, conditions=labels)` draws z ~ N(0, I) and decodes it for the asked class. Pixels are modelled as Bernoulli
means (binary cross-entropy), which suits [0, 1] images with hard edges such as digits and scanned documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthgate.models.base import require_fitted
from synthgate.models.image.common import ImageModel, ProgressCallback, check_images, check_labels
from synthgate.models.image.nets import ConvDecoder, ConvEncoder, one_hot

if TYPE_CHECKING:
    from synthgate.models.scoring import RowScores


@dataclass(frozen=True)
class ImageVAEConfig:
    latent_dim: int = 16
    base_channels: int = 32
    epochs: int = 30  # digits: the loss flattens after about 20
    batch_size: int = 64
    lr: float = 2e-3
    # KL weight (Higgins et al. 2017 call it beta). 1 is the true ELBO, but on digits it gave prototype-like samples
    # (k-NN recall 0.02); 0.3 keeps more of each image's style in z (recall 0.56, class accuracy 0.97).
    beta: float = 0.3
    n_classes: int | None = None  # None: inferred from the labels given to fit
    seed: int = 0
    # Differential privacy (DP-SGD over encoder and decoder, models/privacy.py); None trains without it.
    epsilon: float | None = None
    delta: float | None = None  # None: 1 / (10 n), see models.privacy.default_delta
    max_grad_norm: float = 1.0  # per-sample clipping bound C


class ImageVAE(ImageModel):
    """Conditional VAE over (n, C, H, W) images in [0, 1]; see the module docstring for why it is shaped this way."""

    kind = "image_vae"
    config_class = ImageVAEConfig

    def _build(self) -> dict[str, nn.Module]:
        c, h, w = self.image_shape_
        cfg, k = self.config, self.n_classes_
        return {
            "encoder": ConvEncoder(c, h, w, 2 * cfg.latent_dim, base=cfg.base_channels, cond_dim=k),
            "decoder": ConvDecoder(cfg.latent_dim + k, c, h, w, base=cfg.base_channels),
        }

    def _encode(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.nets_["encoder"](x, cond).chunk(2, dim=1)  # (n, d) each
        return mu, logvar.clamp(-10, 10)

    def _decode(self, z: Tensor, cond: Tensor) -> Tensor:
        return self.nets_["decoder"](torch.cat([z, cond], dim=1))  # (n, C, H, W) logits

    def _train(self, x: Tensor, y: Tensor, generator: torch.Generator, progress: ProgressCallback | None) -> None:
        cfg, device = self.config, self.device_
        params = [p for net in self.nets_.values() for p in net.parameters()]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        dp = self._make_private(self.nets_, opt, len(x)) if self.private else None  # both networks see real images
        if dp is not None:
            opt = dp.optimizer
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr / 20)
        x, cond_all = x.to(device), one_hot(y, self.n_classes_).to(device)
        for net in self.nets_.values():
            net.train()

        def step(idx: Tensor) -> dict[str, float]:
            xb, cb = x[idx], cond_all[idx]  # (b, C, H, W), (b, K)
            mu, logvar = self._encode(xb, cb)
            eps = torch.randn(mu.shape, generator=generator, device=generator.device).to(device)
            z = mu + eps * (0.5 * logvar).exp()  # reparameterisation trick
            logits = self._decode(z, cb)
            recon = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum") / len(idx)
            # KL(q(z|x) || N(0, I)), Kingma & Welling 2014, appendix B.
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(idx)
            loss = recon + cfg.beta * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return {"loss": loss.item(), "recon": recon.item(), "kl": kl.item()}

        self._run_epochs(len(x), step, generator, progress, "loss", on_epoch_end=sched.step, privacy=dp)
        if dp is not None:
            self.nets_ = dict(dp.detach().items())
            self.privacy_ = dp.report()

    def _sample(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        z = self._noise(len(labels), self.config.latent_dim, generator)  # (n, d)
        return torch.sigmoid(self._decode(z, one_hot(labels, self.n_classes_).to(self.device_)))

    def anomaly_scores(self, images: Tensor, labels: Tensor | None = None) -> RowScores:
        """Per-image negative importance-weighted bound and per-pixel parts (`models.image.scoring`); without
        labels, mixed over the training classes."""
        from synthgate.models.image.scoring import image_vae_scores

        return image_vae_scores(self, images, labels)

    @torch.no_grad()
    def interpolate(self, x_a: Tensor, label_a: int, x_b: Tensor, label_b: int, steps: int = 8) -> Tensor:
        """Decode `steps` points on the line between the latent means of two images (and between their classes).

        Args:
            x_a, x_b: (C, H, W) images in [0, 1].
            label_a, label_b: their classes; the one-hot condition is interpolated too, so a strip can morph a 3 into
                an 8 or, with equal labels, show the style axis of one class.

        Returns:
            (steps, C, H, W) images in [0, 1], from x_a's reconstruction to x_b's.
        """
        require_fitted(self, "image_shape_")
        pair = check_images(torch.stack([torch.as_tensor(x_a), torch.as_tensor(x_b)])).to(self.device_)
        cond = one_hot(check_labels(torch.tensor([label_a, label_b]), 2, self.n_classes_), self.n_classes_)
        cond = cond.to(self.device_)
        mu, _ = self._encode(pair, cond)  # (2, d)
        t = torch.linspace(0, 1, steps, device=self.device_)[:, None]  # (steps, 1)
        z = (1 - t) * mu[0] + t * mu[1]  # (steps, d)
        c = (1 - t) * cond[0] + t * cond[1]  # (steps, K)
        return torch.sigmoid(self._decode(z, c)).cpu()
