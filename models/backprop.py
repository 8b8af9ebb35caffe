"""Hand-written backward passes for plain ReLU MLPs: training steps on small batches with half of autograd's ops.

On the 2-core CPU this project is measured on, a tensor op costs 6-10 us to dispatch whatever its size, and autograd
adds about as many ops again for its backward (each forward op's backward node, the gradient accumulation, the
copies that make gradients contiguous). A vae step on penguins (344 rows, one step an epoch) spent about half its
time there. A Linear/ReLU stack's gradients are two products, a sum and a mask per layer, so a step that computes them
directly needs about half the ops: a penguins vae epoch took 3.46 -> 2.44 ms, and one on the 20k x 12 bench table
96 -> 81 ms, with the same gradients to float rounding (tested against autograd).

Only networks of `nn.Linear` (`NarrowInputLinear` included), `nn.LayerNorm` (through aten's own forward and backward
kernels) and `nn.ReLU` layers qualify (`supports_hand_backprop`). Dropout and DP-SGD (Opacus hooks autograd to get
per-sample gradients) keep autograd, and so does CUDA, whose steps run under bfloat16 autocast and pay no comparable
dispatch cost per op.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.nn import NARROW

_relu_backward = torch.ops.aten.threshold_backward  # what autograd runs for ReLU: grad where the output is > 0


def clamp_backward(grad: Tensor, x: Tensor, low: float, high: float) -> Tensor:
    """The gradient through `x.clamp(low, high)`: `grad` where `x` lies strictly inside the bounds, else 0.

    One op (`hardtanh_backward`). Autograd's clamp also passes the gradient on the bounds themselves; a value exactly
    on a bound has measure zero.
    """
    return torch.ops.aten.hardtanh_backward(grad, x, low, high)


def supports_hand_backprop(network: nn.Sequential) -> bool:
    """True when `network` is made of `nn.Linear`, `nn.LayerNorm` and `nn.ReLU` layers only (the `MLP`s of the vae
    and the autoencoder), in any order and depth."""
    layers = list(network)
    allowed = all(isinstance(m, nn.Linear | nn.LayerNorm) or type(m) is nn.ReLU for m in layers)
    return bool(layers) and allowed and all(m.elementwise_affine for m in layers if isinstance(m, nn.LayerNorm))


@torch.no_grad()
def mlp_forward(network: nn.Sequential, x: Tensor) -> tuple[Tensor, list[Any]]:
    """Run a `supports_hand_backprop` network without recording a graph.

    Returns:
        `(output, saved)`: the output, and per layer what `mlp_backward` needs: a linear layer's input, a layer
        norm's input with its row means and reciprocal stds, a ReLU's output (which doubles as its mask).
    """
    saved: list[Any] = []
    for layer in network:
        if isinstance(layer, nn.Linear):
            saved.append(x)
            x = torch.addmm(layer.bias, x, layer.weight.t()) if layer.bias is not None else x @ layer.weight.t()
        elif isinstance(layer, nn.LayerNorm):
            out, mean, rstd = torch.native_layer_norm(x, layer.normalized_shape, layer.weight, layer.bias, layer.eps)
            saved.append((x, mean, rstd))
            x = out
        else:
            x = x.relu_()  # in place: the previous layer's output is not among the saved tensors
            saved.append(x)
    return x, saved


@torch.no_grad()
def mlp_backward(network: nn.Sequential, saved: list[Any], grad: Tensor, *, input_grad: bool) -> Tensor | None:
    """Set `.grad` of every parameter of `network` from `grad`, the loss's gradient with respect to its output.

    The gradients are set, not accumulated, as after `zero_grad(set_to_none=True)` and one `backward()`, and they are
    contiguous: the fused Adam kernel reads a transposed gradient as if it were not.

    Args:
        network: the network `mlp_forward` ran.
        saved: what `mlp_forward` returned beside the output.
        grad: (n, d_out) gradient of the loss with respect to the output.
        input_grad: also return the gradient with respect to the network's input (skipped for an encoder's input).

    Returns:
        (n, d_in) gradient with respect to the input, or None.
    """
    layers = list(network)
    for i in reversed(range(len(layers))):
        layer, kept = layers[i], saved[i]
        last = i == 0 and not input_grad  # nothing below needs the gradient with respect to this layer's input
        if isinstance(layer, nn.Linear):
            # A narrow input (a latent code) makes products whose last dimension is narrow, which MKL runs 4-5x
            # slower here (see `NarrowInputLinear`): compute them transposed.
            narrow = layer.in_features < NARROW
            layer.weight.grad = (kept.t() @ grad).t().contiguous() if narrow else grad.t() @ kept  # (d_out, d_in)
            if layer.bias is not None:
                layer.bias.grad = grad.sum(0)
            if not last:
                grad = (layer.weight.t() @ grad.t()).t() if narrow else grad @ layer.weight
        elif isinstance(layer, nn.LayerNorm):
            x, mean, rstd = kept
            grad, layer.weight.grad, layer.bias.grad = torch.ops.aten.native_layer_norm_backward(
                grad, x, layer.normalized_shape, mean, rstd, layer.weight, layer.bias, [not last, True, True]
            )
        else:
            grad = _relu_backward(grad, kept, 0)
    return None if not input_grad else grad
