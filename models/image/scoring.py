"""Per-image anomaly scores of the image models, in the table models' terms (`models.scoring.RowScores`).

Higher means less plausible, and each is the family's own:
- `image_vae`: the negative importance-weighted bound on log p(x | class) (Burda et al. 2016, eq. 8) under the
  decoder's Bernoulli pixels, with `n_samples` posterior draws from fixed noise, so an image scores the same in
  any batch;
- `image_autoencoder`: the loss the model trained on (binary cross-entropy of the reconstruction) plus minus the
  log-density of the image's standardised code under its class's latent mixture.

Without labels an image is scored against every class, weighted by the training class shares:
-log sum_k p(k) p(x | k), so an unlabelled image needs no guessed class. A pixel's part (the `features` columns, one
per value of C x H x W) is its reconstruction cross-entropy, importance-weighted for the VAE; the latent terms
belong to no pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from synthgate.models.base import require_fitted
from synthgate.models.image.common import check_images, check_labels
from synthgate.models.image.nets import one_hot
from synthgate.models.scoring import SCORE_SEED, RowScores

CHUNK_IMAGES = 256  # images scored at once (per class when unlabelled)


def _per_class(
    model: Any, images: Tensor, labels: Tensor | None, fn: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
) -> RowScores:
    """`fn(images, labels) -> (log p(x | label), pixel parts)` in chunks, given labels or mixed over the class prior."""
    require_fitted(model, "image_shape_")
    x = check_images(images, "images")
    n = x.shape[0]
    classes = [check_labels(labels, n, model.n_classes_, "labels")] if labels is not None else None
    if classes is None:
        classes = [torch.full((n,), k, dtype=torch.long) for k in range(model.n_classes_)]
        log_prior = torch.log(model.class_prior_.double().cpu())
    else:
        log_prior = torch.zeros(1, dtype=torch.float64)
    scores, parts = [], []
    for i in range(0, n, CHUNK_IMAGES):
        xb = x[i : i + CHUNK_IMAGES].to(model.device_)
        per_class = [fn(xb, y[i : i + CHUNK_IMAGES].to(model.device_)) for y in classes]
        joint = torch.stack([lp.double().cpu() for lp, _ in per_class], 1) + log_prior  # (b, n_classes)
        log_px = torch.logsumexp(joint, 1)
        resp = torch.softmax(joint, 1)  # which class explains the image: its pixels' parts weigh by it
        pixels = sum(resp[:, k : k + 1] * p.double().cpu() for k, (_, p) in enumerate(per_class))
        scores.append(-log_px)
        parts.append(pixels)
    return RowScores(torch.cat(scores), torch.cat(parts))


@torch.inference_mode()
def image_vae_scores(model: Any, images: Tensor, labels: Tensor | None = None, *, n_samples: int = 8) -> RowScores:
    """Negative importance-weighted bound of an `ImageVAE` (see the module docstring)."""
    for net in model.nets_.values():
        net.eval()
    latent = model.config.latent_dim
    gen = torch.Generator().manual_seed(SCORE_SEED)
    eps = torch.randn(n_samples, 1, latent, generator=gen).to(model.device_)  # the same draws for every image
    log_q_eps = (-0.5 * eps * eps - 0.5 * math.log(2 * math.pi)).sum(-1)  # (K, 1)

    def one(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        cond = one_hot(y, model.n_classes_).to(x.device)
        mu, logvar = model._encode(x, cond)
        z = mu + torch.exp(0.5 * logvar) * eps  # (K, b, latent)
        b = x.shape[0]
        logits = model._decode(z.reshape(-1, latent), cond.repeat(n_samples, 1))  # (K b, C, H, W)
        target = x.expand(n_samples, *x.shape).reshape(logits.shape)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").reshape(n_samples, b, -1)
        log_pz = -0.5 * (z * z).sum(-1) - 0.5 * latent * math.log(2 * math.pi)
        log_w = (-bce.sum(-1) + log_pz - (log_q_eps - 0.5 * logvar.sum(-1))).double()  # (K, b)
        weights = torch.softmax(log_w, 0).float()[..., None]
        return torch.logsumexp(log_w, 0) - math.log(n_samples), (weights * bce).sum(0)

    return _per_class(model, images, labels, one)


@torch.inference_mode()
def image_autoencoder_scores(model: Any, images: Tensor, labels: Tensor | None = None) -> RowScores:
    """Reconstruction cross-entropy of an `ImageAutoencoder` plus -log density of its code (module docstring)."""
    enc, dec = model.nets_["encoder"], model.nets_["decoder"]
    enc.eval()
    dec.eval()

    def one(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        code = model._code(enc, x)  # (b, d)
        bce = F.binary_cross_entropy_with_logits(dec(code), x, reduction="none").flatten(1)  # (b, C H W)
        z = ((code.cpu() - model.latent_mean_) / model.latent_scale_).double()
        log_density = torch.full((x.shape[0],), -math.inf, dtype=torch.float64)
        for k in y.unique().tolist():  # a class too small to fit a mixture explains none of its images
            mixture = model.mixtures_[k]
            if mixture is not None:
                mask = (y == k).cpu()
                log_density[mask] = mixture.score_samples(z[mask]).double().cpu()
        return log_density - bce.sum(1).double().cpu(), bce

    return _per_class(model, images, labels, one)
