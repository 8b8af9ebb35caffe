"""Convolutional building blocks that work for any image size.

Inputs are zero-padded (right and bottom) up to a multiple of 2**levels and outputs cropped back, so one encoder and
one decoder serve 8x8 digits and 200x300 photos alike. The number of stride-2 levels grows with the image so that the
smallest feature map is about 4x4. GroupNorm, never BatchNorm: batch statistics leak between examples, which breaks
per-example gradient clipping in DP-SGD (Opacus) and makes a sample depend on its batch mates.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_CHANNELS = 256


def n_levels(height: int, width: int) -> int:
    """Stride-2 levels that bring the larger side down to about 4 (at least 1, at most 5)."""
    return max(1, min(5, math.ceil(math.log2(max(height, width) / 4))))


def padded_size(height: int, width: int) -> tuple[int, int]:
    """Height and width rounded up to a multiple of 2**levels."""
    step = 2 ** n_levels(height, width)
    return (math.ceil(height / step) * step, math.ceil(width / step) * step)


def level_channels(base: int, levels: int) -> list[int]:
    """Channels before each level and after the last: base, 2*base, ... capped at MAX_CHANNELS."""
    return [min(base * 2**i, MAX_CHANNELS) for i in range(levels + 1)]


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


def one_hot(labels: Tensor, n_classes: int) -> Tensor:
    """(n,) int labels -> (n, n_classes) float one-hot; (n, n_classes) soft labels pass through."""
    if labels.ndim == 2:
        return labels.float()
    return F.one_hot(labels.long(), n_classes).float()


class ConvEncoder(nn.Module):
    """(n, C, H, W) images [+ (n, K) one-hot classes as constant channels] -> (n, out_dim) vectors."""

    def __init__(
        self, channels: int, height: int, width: int, out_dim: int, *, base: int = 32, cond_dim: int = 0, slope=0.0
    ):
        super().__init__()
        self.height, self.width, self.cond_dim = height, width, cond_dim
        self.padded = padded_size(height, width)
        levels = n_levels(height, width)
        chans = level_channels(base, levels)
        act = nn.LeakyReLU(slope) if slope else nn.SiLU()
        layers: list[nn.Module] = [nn.Conv2d(channels + cond_dim, chans[0], 3, padding=1)]
        for c_in, c_out in itertools.pairwise(chans):
            layers += [group_norm(c_in), act, nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)]
        layers += [group_norm(chans[-1]), act, nn.Flatten()]
        self.body = nn.Sequential(*layers)
        h0, w0 = self.padded[0] // 2**levels, self.padded[1] // 2**levels
        self.head = nn.Linear(chans[-1] * h0 * w0, out_dim)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        n = x.shape[0]
        x = F.pad(x, (0, self.padded[1] - self.width, 0, self.padded[0] - self.height))  # (n, C, Hp, Wp)
        if self.cond_dim:
            planes = cond[:, :, None, None].expand(n, self.cond_dim, *self.padded)  # (n, K, Hp, Wp)
            x = torch.cat([x, planes], dim=1)
        return self.head(self.body(x))  # (n, out_dim)


class ConvDecoder(nn.Module):
    """(n, in_dim) vectors -> (n, C, H, W) logits (apply a sigmoid for pixels in [0, 1])."""

    def __init__(self, in_dim: int, channels: int, height: int, width: int, *, base: int = 32):
        super().__init__()
        self.height, self.width = height, width
        levels = n_levels(height, width)
        chans = level_channels(base, levels)[::-1]  # widest first
        hp, wp = padded_size(height, width)
        self.top = (chans[0], hp // 2**levels, wp // 2**levels)
        self.head = nn.Linear(in_dim, chans[0] * self.top[1] * self.top[2])
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(chans):
            layers += [group_norm(c_in), nn.SiLU(), nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
        layers += [group_norm(chans[-1]), nn.SiLU(), nn.Conv2d(chans[-1], channels, 3, padding=1)]
        self.body = nn.Sequential(*layers)

    def forward(self, v: Tensor) -> Tensor:
        h = self.head(v).view(v.shape[0], *self.top)  # (n, C0, h0, w0)
        return self.body(h)[:, :, : self.height, : self.width]  # (n, C, H, W), cropped from (Hp, Wp)
