"""Networks the neural table models share: MLPs with a fast narrow-input linear layer, a cheap CPU dropout, CTGAN's
residual generator, and the random draws and condition checks their sampling uses.

Networks use LayerNorm, never BatchNorm: BatchNorm mixes rows of a batch, which breaks per-sample gradient clipping in
DP-SGD (Opacus refuses it for that reason) and makes a row's output depend on its batch mates (the gan's generator
is the exception: it never sees a real row).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Sequential):
    """Linear -> LayerNorm -> activation blocks, then a final linear layer.

    Args:
        d_in: input width.
        hidden: widths of the hidden blocks.
        d_out: output width.
        activation: a module class, ReLU by default; the GAN critic passes LeakyReLU without norm.
        norm: put a LayerNorm after each hidden linear layer.
        dropout: dropout after each block (0 disables it).
        narrow: layers with fewer than `NARROW` inputs are `NarrowInputLinear`s (same weights, a faster CPU
            backward); off under DP-SGD, whose per-sample gradients Opacus computes for plain `nn.Linear` only.
    """

    def __init__(
        self,
        d_in: int,
        hidden: Sequence[int],
        d_out: int,
        *,
        activation: type[nn.Module] = nn.ReLU,
        norm: bool = True,
        dropout: float = 0.0,
        narrow: bool = True,
    ):
        def linear(d: int, h: int) -> nn.Linear:
            return NarrowInputLinear(d, h) if narrow and d < NARROW else nn.Linear(d, h)

        layers: list[nn.Module] = []
        width = d_in
        for h in hidden:
            layers.append(linear(width, h))
            if norm:
                layers.append(nn.LayerNorm(h))
            layers.append(nn.LeakyReLU(0.2) if activation is nn.LeakyReLU else activation())
            if dropout > 0:
                layers.append(Dropout(dropout))
            width = h
        layers.append(linear(width, d_out))
        super().__init__(*layers)


NARROW = 16  # inputs below this width get `NarrowInputLinear`; from 16 up both orders of the products cost the same


class NarrowInputLinear(nn.Linear):
    """`nn.Linear` for few input features (a VAE decoder's latent codes), with a faster CPU backward.

    The backward's two products have the narrow input width as their last dimension: grad_input (n, d_in) =
    grad (n, d_out) @ W and grad_W (d_out, d_in) = grad^T @ x. MKL runs those far faster computed transposed,
    (W^T @ grad^T)^T and (x^T @ grad)^T, whose last dimension is wide (docs/decisions.md#cpu-kernels). The same
    parameters and state dict as `nn.Linear`; on other devices it is `nn.Linear`.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            return F.linear(x, self.weight, self.bias)
        return _NarrowLinear.apply(x, self.weight, self.bias)


class _NarrowLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (weight.t() @ grad.t()).t()  # (n, d_in)
        if ctx.needs_input_grad[1]:
            grad_w = (x.t() @ grad).t()  # (d_out, d_in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b


class Dropout(nn.Module):
    """`nn.Dropout` whose mask on CPU comes from 8-bit random integers.

    torch's CPU Bernoulli draw costs about twice a uniform per value, and a uint8 draw less than either
    (docs/decisions.md#cpu-kernels). The drop probability is rounded to a multiple of 1/256 (exact for 0.5 and 0.25),
    and kept values are scaled by the exact inverse of the keep probability, so the expectation is unchanged. On CUDA
    torch's fused kernel is used as is. No parameters: checkpoints are those of `nn.Dropout`, and Opacus accepts it.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * 256)  # a value is dropped when its uint8 draw is below this
        self.scale = 256 / (256 - self.threshold)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.threshold == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        return x * self.mask(x.shape, x.device)

    def mask(self, shape: Sequence[int], device: torch.device | str) -> Tensor:
        """The multiplier a training forward applies: 0 where dropped, 1 / keep probability elsewhere (float32).

        On CPU the same draw as `forward`'s, so code that needs the mask itself (the gan's closed-form gradient
        penalty) consumes the random stream exactly as a forward would; on CUDA a uniform draw of its own.
        """
        if not self.training or self.threshold == 0:
            return torch.ones(tuple(shape), device=device)
        if torch.device(device).type != "cpu":
            return (torch.rand(tuple(shape), device=device) >= self.p) / (1 - self.p)
        keep = torch.empty(tuple(shape), dtype=torch.uint8).random_(0, 256) >= self.threshold
        return keep * self.scale


class ResidualGenerator(nn.Module):
    """CTGAN's generator (Xu et al. 2019): blocks of Linear -> BatchNorm -> ReLU whose output is concatenated to their
    input, so the noise and the conditional vector reach every layer and the output head.

    BatchNorm is safe here even under DP-SGD: only the critic sees real rows, and the generator is never wrapped by
    Opacus. In eval mode (sampling) it uses running statistics, so a row does not depend on its batch mates. It beat the
    LayerNorm MLP at the same speed: docs/decisions.md#gan-residual-generator.
    """

    def __init__(self, d_in: int, hidden: Sequence[int], d_out: int):
        super().__init__()
        self.blocks = nn.ModuleList()
        width = d_in
        for h in hidden:
            self.blocks.append(nn.Sequential(nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()))
            width += h
        self.head = nn.Linear(width, d_out)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = torch.cat([block(x), x], dim=1)  # (b, width so far + h)
        return self.head(x)


def uniform(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """U(0, 1) drawn on the generator's device, then moved: a CPU generator can drive a CUDA model."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(tuple(shape), generator=generator, device=gen_device).to(device)


def normal(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """N(0, 1) drawn on the generator's device, then moved (see `uniform`)."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=gen_device).to(device)


def as_conditions(conditions: Tensor | None, n: int, n_features: int, device: torch.device) -> Tensor | None:
    """Broadcast conditions to (n, n_features) float on `device`; NaN marks free entries.

    Raises:
        InvalidInputError: the shape does not match the model's features or the number of rows asked for.
    """
    from synthgate.schemas.errors import InvalidInputError

    if conditions is None:
        return None
    cond = torch.as_tensor(conditions, dtype=torch.float32).to(device)
    if cond.ndim == 1:
        cond = cond[None, :].expand(n, -1)
    if cond.ndim != 2 or cond.shape[1] != n_features or cond.shape[0] != n:
        raise InvalidInputError(
            f"conditions must have shape ({n_features},) or ({n}, {n_features}) with NaN for free entries, "
            f"got {tuple(cond.shape)}"
        )
    return cond
