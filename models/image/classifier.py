"""A small CNN classifier, trained locally on the real training split, whose penultimate layer is the feature space.

FID normally uses Inception features from downloaded ImageNet weights; this product cannot download weights and its
images (digits, scans, product photos) are often far from ImageNet, so the feature network is trained on the user's own
training split (cf. Kynkäänniemi et al. 2019 and the "domain-specific FID" practice). The same network scores whether a
class-conditional sample shows its intended class.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthgate.models.base import make_generator, resolve_device
from synthgate.models.image.common import check_images, check_labels
from synthgate.models.image.nets import ConvEncoder

log = logging.getLogger(__name__)


class ImageClassifier(nn.Module):
    """(n, C, H, W) -> (n, K) class logits; `features` gives the (n, feature_dim) penultimate activations."""

    def __init__(
        self, channels: int, height: int, width: int, n_classes: int, *, feature_dim: int = 64, base: int = 32
    ):
        super().__init__()
        self.encoder = ConvEncoder(channels, height, width, feature_dim, base=base)
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: Tensor) -> Tensor:
        return F.silu(self.encoder(x))  # (n, feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (n, K)


def train_classifier(
    images: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    n_classes: int,
    *,
    n_steps: int = 400,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    device: str | torch.device | None = "auto",
) -> ImageClassifier:
    """Fit an `ImageClassifier` for a fixed number of steps (so small and large training sets cost the same).

    Light random shifts (up to 1/8 of a side) regularise it: a classifier that memorised its training images would
    give features in which every training image is an isolated point, which distorts precision/recall.
    """
    x = check_images(torch.as_tensor(images))
    y = check_labels(torch.as_tensor(labels), x.shape[0], n_classes, name="labels")
    dev = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ImageClassifier(*x.shape[1:], n_classes).to(dev)
    gen = make_generator(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=n_steps)
    x, y = x.to(dev), y.to(dev)
    h, w = x.shape[2:]
    max_dy, max_dx = max(1, h // 8), max(1, w // 8)
    model.train()
    t0 = time.perf_counter()
    for _ in range(n_steps):
        idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=gen).to(dev)
        dy, dx = (int(v) for v in torch.randint(-max_dy, max_dy + 1, (2,), generator=gen))
        dx = max(-max_dx, min(max_dx, dx))
        xb = torch.roll(x[idx], shifts=(dy, dx), dims=(2, 3))  # (b, C, H, W), one shift per batch
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    log.info(
        "classifier: %d steps on %d images in %.1f s (last loss %.3f)",
        n_steps,
        len(x),
        time.perf_counter() - t0,
        loss.item(),
    )
    return model


@torch.no_grad()
def predict_features(
    model: ImageClassifier, images: Tensor | np.ndarray, batch: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, d), predicted class (n,)) as numpy arrays."""
    x = check_images(torch.as_tensor(images))
    dev = next(model.parameters()).device
    feats, preds = [], []
    for i in range(0, len(x), batch):
        f = model.features(x[i : i + batch].to(dev))
        feats.append(f.cpu())
        preds.append(model.head(f).argmax(1).cpu())
    return torch.cat(feats).numpy(), torch.cat(preds).numpy()
