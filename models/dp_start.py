"""Where a private network starts: 1-way marginals released under DP, or rows drawn from the public domain.

DP-SGD spends its first steps learning what the columns' marginals are; both helpers here give it a start that costs
little or nothing of the budget (docs/decisions.md#dp-sgd-options):

- `private_marginals`: the encoded rows' per-feature means (value means, one-hot and flag frequencies) released by one
  Gaussian mechanism on the clipped sum and the count together, for the vae's `marginal_start` under DP;
- `public_domain_rows`: rows drawn independently and uniformly from the domain the (public) schema gives, in encoded
  units, for a short non-private pre-training that reads no private row.

Both work in the encoded units of `tasks.dp_preprocess.encoder_from_schema`: a number inside its bounds encodes to
[-VALUE_BOUND, VALUE_BOUND] (centre and range / 4), a category to one slot of its one-hot span, a missing value to a
flag.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from synthgate.models.layout import SpanLayout
from synthgate.models.nn import normal
from synthgate.models.privacy import gaussian_sigma

# Encoded value features of a private run lie in [-2, 2]: standard normalisation from the bounds, range / 4 a unit.
VALUE_BOUND = 2.0


def row_norm_bound(layout: SpanLayout) -> float:
    """The largest L2 norm of one clipped encoded row with a 1 appended for the count: the mechanism's sensitivity
    when a row is added or removed (DP-SGD's neighbouring relation under Poisson sampling)."""
    n_values = layout.linear.numel()
    n_flags = layout.sigmoid.numel()
    return math.sqrt(n_values * VALUE_BOUND**2 + n_flags + len(layout.soft_spans) + 1.0)


def private_marginals(
    x: Tensor, layout: SpanLayout, *, epsilon: float, delta: float, generator: torch.Generator
) -> Tensor:
    """Per-feature means of the encoded rows `x` (n, d) released under (epsilon, delta)-DP.

    The values are clipped to the encoded bounds (a no-op for rows inside the schema's bounds), a count column of ones
    is appended, and the sum of the rows gets Gaussian noise calibrated by RDP (`gaussian_sigma`) to the row norm
    bound. Noisy means are then clamped into their feasible ranges, which is post-processing.

    Returns:
        (d,) means in feature order, for `SpanLayout.marginal_output`.
    """
    values = x.clone()
    lin = layout.linear
    if lin.numel():
        values[:, lin] = values[:, lin].clamp(-VALUE_BOUND, VALUE_BOUND)
    total = torch.cat([values.sum(0), torch.tensor([float(x.shape[0])], device=x.device)])  # (d + 1,)
    sigma = gaussian_sigma(epsilon, delta, sensitivity=row_norm_bound(layout))
    noisy = total + sigma * normal(total.shape, generator, x.device)
    mean = noisy[:-1] / noisy[-1].clamp(min=1.0)
    if lin.numel():
        mean[lin] = mean[lin].clamp(-VALUE_BOUND, VALUE_BOUND)
    rest = torch.ones_like(mean, dtype=torch.bool)
    rest[lin] = False
    mean[rest] = mean[rest].clamp(0.0, 1.0)
    return mean


def public_domain_rows(layout: SpanLayout, n: int, generator: torch.Generator) -> Tensor:
    """`n` encoded rows (n, d) drawn from the public domain alone: every value uniform within its bounds, every
    category uniform over its levels, every flag off. No private row is read."""
    device = layout.linear.device
    rows = torch.zeros(n, layout.n_features, device=device)
    lin = layout.linear
    if lin.numel():
        u = torch.rand(n, lin.numel(), generator=generator, device=generator.device).to(device)
        rows[:, lin] = (2 * u - 1) * VALUE_BOUND
    for span in layout.soft_spans:
        pick = torch.randint(span.width, (n,), generator=generator, device=generator.device).to(device)
        rows[torch.arange(n, device=device), span.start + pick] = 1.0
    return rows
