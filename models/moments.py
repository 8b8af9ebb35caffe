"""Moment matching for the gan's generator: the squared gap between fake and real batches' feature means and
covariances (generative moment matching, Li et al. 2015; McGAN, Mroueh et al. 2017), by autograd and by hand."""

from __future__ import annotations

import torch
from torch import Tensor

# Rows of up to this many encoded features match their moments exactly; wider rows along MOMENT_SKETCH random
# directions drawn afresh each step, whose cost does not grow with the width: docs/decisions.md#moment-sketch.
MOMENT_EXACT_WIDTH = 128
MOMENT_SKETCH = 64


def moment_projection(width: int, device: torch.device) -> Tensor | None:
    """None when rows of `width` features are matched exactly; else a (width, MOMENT_SKETCH) Gaussian projection with
    variance 1 / MOMENT_SKETCH (E[P P^T] = I, so the projected mean gap's expected square is the full one's), from the
    global RNG, which `fit` seeds."""
    if width <= MOMENT_EXACT_WIDTH:
        return None
    return torch.randn(width, MOMENT_SKETCH, device=device).mul_(MOMENT_SKETCH**-0.5)


def moment_matching_loss(fake: Tensor, real: Tensor, projection: Tensor | None = None) -> Tensor:
    """||m_f - m_r||^2 + ||C_f - C_r||_F^2 for batches of rows `fake` (b, d) and `real` (b', d): the squared distance
    between their feature means m and covariances C (over rows, divided by the row count), of the rows times
    `projection` (d, k) when given (`moment_projection`). Differentiable in `fake`. Computed in float32 with autocast
    off: a covariance gap is a difference of near-equal sums, which bfloat16's three digits would drown."""
    with torch.autocast(fake.device.type, enabled=False):
        fake, real = fake.float(), real.float()
        if projection is not None:
            fake, real = fake @ projection, real @ projection
        mean_f, mean_r = fake.mean(0), real.mean(0)
        centred_f, centred_r = fake - mean_f, real - mean_r
        gap = centred_f.t() @ centred_f / fake.shape[0] - centred_r.t() @ centred_r / real.shape[0]  # (d, d)
        return (mean_f - mean_r).pow(2).sum() + gap.pow(2).sum()


@torch.no_grad()
def moment_matching_by_hand(
    fake: Tensor, real: Tensor, weight: float, d_fake: Tensor, projection: Tensor | None = None
) -> Tensor:
    """`weight * moment_matching_loss(fake, real, projection)` without autograd, for batches of equal size b; adds its
    gradient with respect to `fake` into `d_fake` (b, d) in place.

    With F and R the centred fake and real rows, G = C_f - C_r = (F^T F - R^T R) / b is the symmetric part of
    (F - R)^T (F + R) / b (the cross terms F^T R - R^T F are antisymmetric): one (d, b) x (b, d) product where two
    were (docs/decisions.md#moment-sketch). The covariance term's gradient
    is 4 F G / b (the centring adds nothing: F's rows sum to zero), the mean term's 2 (m_f - m_r) / b.
    """
    if projection is not None:  # the projected rows' gradient, carried back through the projection
        d_projected = fake.new_zeros(fake.shape[0], projection.shape[1])
        loss = moment_matching_by_hand(fake @ projection, real @ projection, weight, d_projected)
        d_fake.addmm_(d_projected, projection.t())
        return loss
    b = fake.shape[0]
    mean_f, mean_r = fake.mean(0), real.mean(0)
    centred_f, centred_r = fake - mean_f, real - mean_r
    product = (centred_f - centred_r).t() @ (centred_f + centred_r)  # (d, d)
    gap = (product + product.t()).mul_(0.5 / b)  # C_f - C_r (an in-place add would read what it writes)
    mean_gap = mean_f - mean_r  # (d,)
    d_fake.addmm_(centred_f, gap, alpha=4 * weight / b).add_(mean_gap, alpha=2 * weight / b)
    return weight * (mean_gap.dot(mean_gap) + gap.pow(2).sum())
