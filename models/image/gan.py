"""Class-conditional DCGAN with an auxiliary classifier (Radford et al. 2016; Odena et al. 2017, AC-GAN).

The generator decodes noise plus a one-hot class; the discriminator sees the image with its class as constant
channels and has two heads: real/fake and the class. Training the generator to make the class head agree with the
intended class is what makes conditional samples recognisable after a few CPU minutes; the plain conditional GAN
often learns to ignore the label for a long time. Non-saturating loss; GroupNorm instead of BatchNorm (DP-SGD ready).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthgate.models.image.common import ImageModel, ProgressCallback
from synthgate.models.image.nets import ConvDecoder, ConvEncoder, one_hot


@dataclass(frozen=True)
class ImageGANConfig:
    latent_dim: int = 32
    base_channels: int = 32
    epochs: int = 60  # digits: class accuracy 0.93 at 60
    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)  # DCGAN's Adam setting; beta1=0.9 oscillates
    aux_weight: float = 1.0  # weight of the class-head loss for both players
    n_classes: int | None = None
    seed: int = 0
    # Differential privacy (models/privacy.py): DP-SGD on the discriminator, the only network that sees real images;
    # the generator learns from the discriminator's outputs alone, so it is post-processing. None trains without it.
    epsilon: float | None = None
    delta: float | None = None  # None: 1 / (10 n), see models.privacy.default_delta
    max_grad_norm: float = 1.0  # per-sample clipping bound C of the discriminator's gradients


class ImageGAN(ImageModel):
    """Conditional GAN over (n, C, H, W) images in [0, 1]; see the module docstring."""

    kind = "image_gan"
    config_class = ImageGANConfig

    def _build(self) -> dict[str, nn.Module]:
        c, h, w = self.image_shape_
        cfg, k = self.config, self.n_classes_
        return {
            "generator": ConvDecoder(cfg.latent_dim + k, c, h, w, base=cfg.base_channels),
            "discriminator": ConvEncoder(c, h, w, 1 + k, base=cfg.base_channels, cond_dim=k, slope=0.2),
        }

    def _generate(self, z: Tensor, cond: Tensor) -> Tensor:
        return torch.sigmoid(self.nets_["generator"](torch.cat([z, cond], dim=1)))  # (n, C, H, W)

    def _discriminate(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        out = self.nets_["discriminator"](x, cond)  # (n, 1 + K)
        return out[:, 0], out[:, 1:]  # real/fake logit (n,), class logits (n, K)

    def _train(self, x: Tensor, y: Tensor, generator: torch.Generator, progress: ProgressCallback | None) -> None:
        cfg, device, k = self.config, self.device_, self.n_classes_
        gen, disc = self.nets_["generator"], self.nets_["discriminator"]
        opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        dp = self._make_private({"discriminator": disc}, opt_d, len(x)) if self.private else None
        if dp is not None:
            opt_d = dp.optimizer
        x, y = x.to(device), y.to(device)
        prior = self.class_prior_  # uniform with epsilon (ImageModel.fit): the fake classes carry no class shares
        gen.train()
        disc.train()

        def step(idx: Tensor) -> dict[str, float]:
            xb, yb = x[idx], y[idx]
            b = len(idx)
            cond_real = one_hot(yb, k)
            y_fake = torch.multinomial(prior, b, replacement=True, generator=generator).to(device)
            cond_fake = one_hot(y_fake, k)
            fake = self._generate(self._noise(b, cfg.latent_dim, generator), cond_fake)  # (b, C, H, W)
            # Discriminator: real -> 1, fake -> 0, and name the class of real images.
            adv_real, cls_real = self._discriminate(xb, cond_real)
            adv_fake, _ = self._discriminate(fake.detach(), cond_fake)
            loss_d = (
                F.binary_cross_entropy_with_logits(adv_real, torch.ones_like(adv_real))
                + F.binary_cross_entropy_with_logits(adv_fake, torch.zeros_like(adv_fake))
                + cfg.aux_weight * F.cross_entropy(cls_real, yb)
            )
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            # Generator: fool the real/fake head and make the class head see the intended class.
            if dp is not None:
                dp.module.disable_hooks()  # the generator step needs no per-sample discriminator gradients
            adv_fake, cls_fake = self._discriminate(fake, cond_fake)
            loss_g = F.binary_cross_entropy_with_logits(adv_fake, torch.ones_like(adv_fake))
            loss_g = loss_g + cfg.aux_weight * F.cross_entropy(cls_fake, y_fake)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            if dp is not None:
                dp.module.enable_hooks()
            return {"loss_g": loss_g.item(), "loss_d": loss_d.item()}

        self._run_epochs(len(x), step, generator, progress, "loss_g", privacy=dp)
        if dp is not None:
            self.nets_["discriminator"] = dp.detach()["discriminator"]
            self.privacy_ = dp.report()

    def _sample(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        z = self._noise(len(labels), self.config.latent_dim, generator)
        return self._generate(z, one_hot(labels, self.n_classes_).to(self.device_))
