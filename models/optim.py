"""Optimisers and weight averaging the neural table models share: Adam on its fused kernel, and Polyak averaging."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def adam(params, *, lr: float, private: bool = False, **kwargs) -> torch.optim.Adam:
    """Adam with the fused kernel (one op per step for all parameters instead of about ten per parameter tensor).

    Under DP-SGD (`private`) the plain implementation is kept: Opacus's `DPOptimizer` wraps and steps it.
    """
    if private:
        return torch.optim.Adam(params, lr=lr, **kwargs)
    return FusedAdam(params, lr=lr, fused=True, **kwargs)


class FusedAdam(torch.optim.Adam):
    """`torch.optim.Adam(fused=True)` whose steps after the first call the fused kernel directly.

    `Adam.step` regroups the parameters by device and dtype and re-reads every option on each call: for a small
    network more Python time than the kernel itself (docs/decisions.md#cpu-kernels).
    The first step creates Adam's state itself; any unusual step (a closure, a parameter without a gradient, mixed
    devices or dtypes) goes through `Adam.step`; the state is Adam's own, so checkpoints and `state_dict` are unchanged.

    Neither path imports `torch._dynamo` (4 s of a CPU fit's start): `Adam.step`'s wrapper imports it for a graph
    break and `Optimizer.add_param_group`'s to mark itself untraceable, both of which matter only under
    `torch.compile`, which no model here uses (docs/decisions.md#no-dynamo).
    """

    def step(self, closure=None):
        lists = getattr(self, "_fused_lists", None)
        if closure is None and lists is None and self._create_state():
            lists = self._fused_lists = self._direct_lists()
        if closure is None and lists is not None:
            params, exp_avgs, exp_avg_sqs, steps, counter = lists
            grads = [p.grad for p in params]
            if all(g is not None for g in grads):
                group = self.param_groups[0]
                beta1, beta2 = group["betas"]
                with torch.no_grad():
                    counter.add_(1)  # every parameter's step count: they are views of this one tensor
                    torch._fused_adam_(
                        params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
                        beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                        maximize=False, grad_scale=None, found_inf=None,
                    )  # fmt: skip
                return None
        loss = super().step(closure)
        self._fused_lists = self._direct_lists()
        return loss

    # `Optimizer.__init__` wraps a class's `step` in its profiler and hook dispatcher unless the function is marked
    # `hooked`: more Python per call. Our models register no optimizer hooks, so the fast path goes unwrapped.
    step.hooked = True

    def zero_grad(self, set_to_none: bool = True) -> None:
        """`Optimizer.zero_grad`, without its profiler scope and per-group bookkeeping when grads are simply
        dropped."""
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._fused_lists = None  # the state tensors were replaced: rebuilt by the next step

    def add_param_group(self, param_group: dict) -> None:
        base = torch.optim.Optimizer.add_param_group
        getattr(base, "__wrapped__", base)(self, param_group)  # the function under its dynamo-disabling wrapper
        self._fused_lists = None

    def _create_state(self) -> bool:
        """Adam's lazy state (step 0, zero moments) for one plain group of same-device floating parameters that all
        have gradients, as `Adam.step` creates it for the fused kernel; False (nothing created) otherwise."""
        if len(self.param_groups) != 1 or self.state:
            return False
        group = self.param_groups[0]
        params = group["params"]
        plain = group["fused"] and not (group["amsgrad"] or group["maximize"] or group["capturable"])
        if not plain or group["differentiable"] or isinstance(group["lr"], Tensor) or not params:
            return False
        if any(p.grad is None or not p.is_floating_point() for p in params):
            return False
        if len({(p.device, p.dtype) for p in params}) != 1 or params[0].device.type not in ("cpu", "cuda"):
            return False
        for p in params:
            self.state[p] = {
                "step": torch.zeros((), dtype=torch.float32, device=p.device),  # the fused kernel's step dtype
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
        return True

    def _direct_lists(self) -> tuple[Any, ...] | None:
        """The tensors the kernel takes, when one plain group of same-device, same-dtype parameters allows it.

        The per-parameter step counts become views of one tensor, so a step counts them all with one `add_`:
        `_foreach_add_` on a CPU list of 0-d tensors costs several scalar `add_`s. Each state
        still holds its own 0-d `step` tensor, as Adam keeps it; they only share their storage until a reload.
        """
        if len(self.param_groups) != 1:
            return None
        group = self.param_groups[0]
        params = group["params"]
        if group["amsgrad"] or group["maximize"] or isinstance(group["lr"], Tensor) or not params:
            return None
        if len({(p.device, p.dtype) for p in params}) != 1 or any(p not in self.state for p in params):
            return None
        states = [self.state[p] for p in params]
        if len({(s["step"].device, s["step"].dtype, s["step"].item()) for s in states}) != 1:
            return None  # the counts differ (a state loaded from elsewhere): no shared counter
        counter = torch.stack([s["step"] for s in states])  # (n_params,)
        for i, s in enumerate(states):
            s["step"] = counter[i]
        return (
            list(params),
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["step"] for s in states],
            counter,
        )


class WeightAverage:
    """An exponential moving average of a module's parameters, kept beside them (Polyak averaging; Yazici et al.
    2019 for GANs), and copied into the module once training ends.

    Args:
        module: the network whose parameters are averaged; the average starts from their current values.
        horizon: the average's time constant in `update` calls (its rate is 1 / horizon), at least 1.
    """

    def __init__(self, module: nn.Module, horizon: float):
        self.live = [p.detach() for p in module.parameters()]
        self.average = [p.clone() for p in self.live]
        self.rate = 1.0 / max(1.0, horizon)

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the current parameters: one fused lerp for all of them."""
        torch._foreach_lerp_(self.average, self.live, self.rate)

    @torch.no_grad()
    def apply(self) -> None:
        """Overwrite the module's parameters with the average."""
        torch._foreach_copy_(self.live, self.average)
