"""Inference-only forward passes of a model's MLP layers on CPU, each linear layer fused with the activation after it.

Scoring a million rows runs the same few small layers over and over; on CPU, torch's separate GELU kernel costs more
than the matrix product before it, while oneDNN applies the activation in the product's epilogue with the same
result (docs/decisions.md#fused-scoring-layers). `torch.ops.mkldnn._linear_pointwise` is the fused op torch's own
compiler emits for CPU; where it is missing or fails (no oneDNN, another device or dtype), the layers run as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from synthgate.models.nn import Dropout

_FUSED: dict[str, bool] = {}  # per activation, whether the fused op ran here and agreed: probed once per process


def _fused_available(act: nn.Module, attr: tuple[str, list[float], str]) -> bool:
    """Whether oneDNN's fused linear + this activation runs and agrees with the plain layers (probed once each)."""
    name, scalars, algorithm = attr
    key = f"{name}{scalars}{algorithm}"
    if key not in _FUSED:
        try:
            lin = nn.Linear(4, 3)
            x = torch.linspace(-2, 2, 8).view(2, 4)
            with torch.no_grad():
                out = torch.ops.mkldnn._linear_pointwise(x, lin.weight, lin.bias, name, scalars, algorithm or "none")
                _FUSED[key] = bool(torch.allclose(out, act(lin(x)), atol=1e-6))
        except (AttributeError, RuntimeError, NotImplementedError):
            _FUSED[key] = False
    return _FUSED[key]


def _attr(act: nn.Module | None) -> tuple[str, list[float], str] | None:
    """oneDNN's name, scalars and algorithm for an activation module, or None when it has none."""
    if isinstance(act, nn.GELU):
        return "gelu", [], act.approximate
    if isinstance(act, nn.ReLU):
        return "relu", [], ""
    if isinstance(act, nn.SiLU):
        return "swish", [], ""
    if isinstance(act, nn.LeakyReLU):
        return "leaky_relu", [act.negative_slope], ""
    return None


def _fused_step(linear: nn.Linear, act: nn.Module, attr: tuple[str, list[float], str]) -> Callable[[Tensor], Tensor]:
    name, scalars, algorithm = attr

    def step(x: Tensor) -> Tensor:
        if x.dtype != torch.float32 or linear.weight.dtype != torch.float32:
            return act(linear(x))
        return torch.ops.mkldnn._linear_pointwise(x, linear.weight, linear.bias, name, scalars, algorithm)

    return step


def inference_steps(
    layers: Iterable[nn.Module], *, device: torch.device | str = "cpu"
) -> list[Callable[[Tensor], Tensor]]:
    """The layers of an MLP in eval mode as callables, a linear layer and the activation after it as one step (a
    final linear layer with its bias alone).

    Dropout is skipped (it is the identity in eval mode). On a device other than the CPU, or without the fused op,
    the steps are the layers themselves.
    """
    mods = [m for m in layers if not isinstance(m, nn.Dropout | Dropout)]
    on_cpu = torch.device(device).type == "cpu"
    steps: list[Callable[[Tensor], Tensor]] = []
    i = 0
    while i < len(mods):
        attr = _attr(mods[i + 1]) if i + 1 < len(mods) else ("none", [], "")  # the last layer: bias only
        last = i + 1 == len(mods)
        act = nn.Identity() if last else mods[i + 1]
        fuse = on_cpu and attr is not None and _fused_available(act, attr)
        if fuse and isinstance(mods[i], nn.Linear) and mods[i].bias is not None:
            steps.append(_fused_step(mods[i], act, attr))
            i += 1 if last else 2
        else:
            steps.append(mods[i])
            i += 1
    return steps


def run_steps(steps: list[Callable[[Tensor], Tensor]], x: Tensor) -> Tensor:
    """`x` through `inference_steps` in order."""
    for step in steps:
        x = step(x)
    return x
