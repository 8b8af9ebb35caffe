"""Hand-written backward passes for plain ReLU MLPs: training steps on small batches with half of autograd's ops.

On a small CPU a tensor op costs microseconds to dispatch whatever its size, and autograd adds about as many ops again
for its backward (each forward op's backward node, the gradient accumulation, the copies that make gradients
contiguous). A Linear/ReLU stack's gradients are two products, a sum and a mask per layer, so a step that computes them
directly needs about half the ops, with the same gradients to float rounding (tested against autograd; figures in
docs/decisions.md#hand-backprop). Each neural config's `hand_backprop=False` trains through autograd instead.

Only networks of `nn.Linear` (`NarrowInputLinear` included), `nn.LayerNorm` (through aten's own forward and backward
kernels), `nn.ReLU` and `nn.LeakyReLU` layers qualify (`supports_hand_backprop`), and the gan's `ResidualGenerator`
(`residual_forward` / `residual_backward`, BatchNorm in training mode through aten's kernels). Dropout and DP-SGD
(Opacus hooks autograd to get per-sample gradients) keep autograd, and so does CUDA, whose steps run under bfloat16
autocast and pay no comparable dispatch cost per op.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from synthgate.models.nn import NARROW, ResidualGenerator

WIDE_UNITS = 128  # see `_linear_backward`
_relu_backward = torch.ops.aten.threshold_backward  # what autograd runs for ReLU: grad where the output is > 0


def clamp_backward(grad: Tensor, x: Tensor, low: float, high: float) -> Tensor:
    """The gradient through `x.clamp(low, high)`: `grad` where `x` lies strictly inside the bounds, else 0.

    One op (`hardtanh_backward`). Autograd's clamp also passes the gradient on the bounds themselves; a value exactly
    on a bound has measure zero.
    """
    return torch.ops.aten.hardtanh_backward(grad, x, low, high)


def supports_hand_backprop(network: nn.Module) -> bool:
    """True when `network` is an `nn.Sequential` of `nn.Linear`, `nn.LayerNorm`, `nn.ReLU` and `nn.LeakyReLU` layers
    only (the `MLP`s of the vae, the autoencoder and the gan's critic), in any order and depth, or a
    `ResidualGenerator`."""
    if isinstance(network, ResidualGenerator):
        return all(
            isinstance(b[1], nn.BatchNorm1d) and b[1].affine and b[1].momentum is not None for b in network.blocks
        )
    if not isinstance(network, nn.Sequential):
        return False
    layers = list(network)
    allowed = all(isinstance(m, nn.Linear | nn.LayerNorm) or type(m) in (nn.ReLU, nn.LeakyReLU) for m in layers)
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
            x = F.linear(x, layer.weight, layer.bias)  # addmm with the transpose taken in C++, not another Python op
        elif isinstance(layer, nn.LayerNorm):
            out, mean, rstd = torch.native_layer_norm(x, layer.normalized_shape, layer.weight, layer.bias, layer.eps)
            saved.append((x, mean, rstd))
            x = out
        elif isinstance(layer, nn.LeakyReLU):
            x = torch.nn.functional.leaky_relu_(x, layer.negative_slope)  # in place, as the ReLU below
            saved.append(x)
        else:
            x = x.relu_()  # in place: the previous layer's output is not among the saved tensors
            saved.append(x)
    return x, saved


@torch.no_grad()
def mlp_backward(
    network: nn.Sequential, saved: list[Any], grad: Tensor, *, input_grad: bool, param_grads: bool = True
) -> Tensor | None:
    """Set `.grad` of every parameter of `network` from `grad`, the loss's gradient with respect to its output.

    The gradients are set, not accumulated, as after `zero_grad(set_to_none=True)` and one `backward()`, and they are
    contiguous: the fused Adam kernel reads a transposed gradient as if it were not.

    Args:
        network: the network `mlp_forward` ran.
        saved: what `mlp_forward` returned beside the output.
        grad: (n, d_out) gradient of the loss with respect to the output.
        input_grad: also return the gradient with respect to the network's input (skipped for an encoder's input).
        param_grads: False leaves every `.grad` alone and only carries the gradient to the input: the gan's
            generator step, which trains the generator through a critic it does not update.

    Returns:
        (n, d_in) gradient with respect to the input, or None.
    """
    layers = list(network)
    for i in reversed(range(len(layers))):
        layer, kept = layers[i], saved[i]
        last = i == 0 and not input_grad  # nothing below needs the gradient with respect to this layer's input
        if isinstance(layer, nn.Linear):
            grad = _linear_backward(layer, kept, grad, param_grads=param_grads, input_grad=not last)
        elif isinstance(layer, nn.LayerNorm):
            x, mean, rstd = kept
            grad, d_weight, d_bias = torch.ops.aten.native_layer_norm_backward(
                grad,
                x,
                layer.normalized_shape,
                mean,
                rstd,
                layer.weight,
                layer.bias,
                [not last, param_grads, param_grads],
            )
            if param_grads:
                layer.weight.grad, layer.bias.grad = d_weight, d_bias
        elif isinstance(layer, nn.LeakyReLU):
            grad = torch.ops.aten.leaky_relu_backward(grad, kept, layer.negative_slope, True)  # kept is the output
        else:
            grad = _relu_backward(grad, kept, 0)
    return None if not input_grad else grad


def _linear_backward(layer: nn.Linear, x: Tensor, grad: Tensor, *, param_grads: bool, input_grad: bool) -> Tensor:
    """Set a linear layer's contiguous weight and bias gradients (with `param_grads`) from its input `x` (n, d_in)
    and output gradient `grad` (n, d_out); return the input's gradient (n, d_in), or `grad` itself without
    `input_grad` (nothing below needs it)."""
    # A narrow input (a latent code) makes products whose last dimension is narrow, which MKL runs slowly (see
    # `NarrowInputLinear`): compute them transposed.
    narrow = layer.in_features < NARROW
    # The weight gradient of a layer that widens a small input to 128 or more units (an encoder's first layer) also
    # runs faster transposed; into fewer units (the gan's critic) slower (docs/decisions.md#cpu-kernels).
    transposed = narrow or layer.in_features < WIDE_UNITS <= layer.out_features
    if param_grads:
        layer.weight.grad = (x.t() @ grad).t().contiguous() if transposed else grad.t() @ x  # (d_out, d_in)
        if layer.bias is not None:
            layer.bias.grad = grad.sum(0)
    if not input_grad:
        return grad
    return (layer.weight.t() @ grad.t()).t() if narrow else grad @ layer.weight


@torch.no_grad()
def residual_forward(network: ResidualGenerator, x: Tensor) -> tuple[Tensor, list[Any]]:
    """A training-mode forward of a `ResidualGenerator` without a graph, as `network(x)` runs it.

    Each block's BatchNorm normalises with the batch's statistics and updates its running ones (and its batch count)
    as `nn.BatchNorm1d` does, so the module's state after a hand-written step is the one autograd's would leave.

    Returns:
        `(output, saved)`: the output and, per block then for the head, what `residual_backward` needs.
    """
    saved: list[Any] = []
    for linear, norm, _ in network.blocks:
        h = F.linear(x, linear.weight, linear.bias)  # (n, h)
        a, mean, invstd = torch.native_batch_norm(
            h, norm.weight, norm.bias, norm.running_mean, norm.running_var, True, norm.momentum, norm.eps
        )
        norm.num_batches_tracked.add_(1)
        a = a.relu_()
        saved.append((x, h, mean, invstd, a))
        x = torch.cat([a, x], dim=1)  # (n, width so far + h)
    saved.append(x)
    return F.linear(x, network.head.weight, network.head.bias), saved


@torch.no_grad()
def residual_backward(network: ResidualGenerator, saved: list[Any], grad: Tensor) -> None:
    """Set `.grad` of every parameter of `network` from `grad` (n, d_out), the loss's gradient with respect to its
    output; `saved` is what `residual_forward` returned. The gradient with respect to the input is not computed (it
    is noise and a conditional vector)."""
    grad_x = _linear_backward(network.head, saved[-1], grad, param_grads=True, input_grad=True)  # (n, head width)
    for i in reversed(range(len(network.blocks))):
        linear, norm, _ = network.blocks[i]
        x, h, mean, invstd, a = saved[i]
        d_a, grad_x = grad_x.split([a.shape[1], x.shape[1]], dim=1)  # the block's output, then its input passed on
        d_a = _relu_backward(d_a, a, 0)
        d_h, norm.weight.grad, norm.bias.grad = torch.ops.aten.native_batch_norm_backward(
            d_a, h, norm.weight, norm.running_mean, norm.running_var, mean, invstd, True, norm.eps, [True, True, True]
        )
        # The first block's input is the noise and the conditional vector: no gradient to carry below it.
        d_x = _linear_backward(linear, x, d_h, param_grads=True, input_grad=i > 0)
        if i:
            grad_x = grad_x + d_x
