"""Classic label-preserving augmentation as a model: the cheap baseline the learnt models must beat.

`fit` keeps the training images by class; `sample` picks a training image of the asked class and applies a random
small rotation and shift (and, only when the user says they keep the label, flips). Bilinear resampling with zero
fill. Its output is derived from training images by construction, so the privacy gate usually refuses it for
publication as a synthetic *copy*; it is meant for augmentation sets that stay inside the trust boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthgate.models.image.common import ImageModel, ProgressCallback


@dataclass(frozen=True)
class ImageAugmentConfig:
    max_rotation: float = 12.0  # degrees either way
    max_shift: float = 0.12  # fraction of the image side either way (1 pixel on 8x8 digits)
    min_scale: float = 0.92
    max_scale: float = 1.08
    flip_horizontal: bool = False  # only label-safe for some data (not for digits or text); the user's choice
    flip_vertical: bool = False
    epochs: int = 1  # nothing to train; kept so every image model answers to --epochs
    batch_size: int = 256
    n_classes: int | None = None
    seed: int = 0


def random_affine(x: Tensor, cfg: ImageAugmentConfig, generator: torch.Generator) -> Tensor:
    """Rotate, scale and shift each of (n, C, H, W) images by its own random amount; returns the same shape."""
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, device=generator.device).to(x.device)

    angle = uniform(-cfg.max_rotation, cfg.max_rotation) * math.pi / 180
    scale = uniform(cfg.min_scale, cfg.max_scale)
    shift_x, shift_y = uniform(-cfg.max_shift, cfg.max_shift) * 2, uniform(-cfg.max_shift, cfg.max_shift) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)  # (n, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (n, H, W, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    for enabled, dim in ((cfg.flip_horizontal, 3), (cfg.flip_vertical, 2)):
        if enabled:
            flip = torch.rand(n, generator=generator, device=generator.device).to(x.device) < 0.5
            out[flip] = out[flip].flip(dim - 1)  # dims of one image are (C, H, W)
    return out


class ImageAugment(ImageModel):
    """Transforms of training images; see the module docstring.

    Attributes:
        images_: (n, C, H, W) training images.
        labels_: (n,) their classes.
    """

    kind = "image_augment"
    config_class = ImageAugmentConfig

    def _build(self) -> dict[str, nn.Module]:
        return {}

    def _train(self, x: Tensor, y: Tensor, generator: torch.Generator, progress: ProgressCallback | None) -> None:
        self.images_, self.labels_ = x.clone(), y.clone()

    def _sample(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        picks = torch.empty(len(labels), dtype=torch.long)
        for k in labels.unique().tolist():
            mask = labels == k
            pool = (self.labels_ == k).nonzero().flatten()
            if len(pool) == 0:
                raise ValueError(f"class {k} has no training images to augment")
            choice = torch.randint(len(pool), (int(mask.sum()),), generator=generator, device=generator.device)
            picks[mask] = pool[choice.cpu()]
        return random_affine(self.images_[picks], self.config, generator)

    def _extra_state(self) -> dict[str, Tensor]:
        return {"images": self.images_, "labels": self.labels_}

    def _set_extra_state(self, state: dict[str, Tensor]) -> None:
        self.images_, self.labels_ = state["images"].cpu(), state["labels"].cpu()
