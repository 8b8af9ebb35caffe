"""The gan's training steps with hand-written gradients (`models.backprop`): the same draws, losses and updates as the
autograd step of `models.gan.GAN`, in about half the tensor ops; `GANConfig.hand_backprop=False` turns them off."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthgate.models.backprop import mlp_backward, mlp_forward, residual_backward, residual_forward
from synthgate.models.moments import moment_matching_by_hand, moment_projection
from synthgate.models.nn import ResidualGenerator


class GANGradients:
    """Mixin of `GAN`: the critic's and the generator's losses with every `.grad` set by hand, and the gradient
    penalty in closed form for a one-hidden-layer critic."""

    cfg: Any
    critic_: nn.Sequential
    generator_: nn.Module
    layout_: Any
    cond_: Any
    bounded_: Tensor
    _packs: Any  # `GAN._packs`: rows and cond vectors cut into the critic's packs

    def _penalty_by_hand(
        self, real: Tensor, fake: Tensor, cond: Tensor, scale: float
    ) -> tuple[Tensor, list[tuple[nn.Parameter, Tensor]]]:
        """`scale` times the gradient penalty and its gradients for the critic's two weight matrices, in closed form.

        For the one-hidden-layer critic f(x) = w2 . (m * lrelu(W1 x + b1)) + b2 (dropout mask m), the input gradient
        is W1^T (s * m * w2) with s the LeakyReLU slope at each unit, a step function of x whose own derivative is 0.
        So with S = s * m * w2 per pack, G = S W1 (kept on the rows' columns: the penalty is on the gradient with
        respect to the interpolated rows, not their cond vectors) and R = dPenalty/dG, zero on the cond columns:
        dW1 = S^T R, dw2 = sum over packs of (R W1^T) * s * m, and the biases get nothing. Four thin products and a
        few elementwise ops in place of autograd's double backward (docs/decisions.md#gan-lazy-penalty). Same random
        draws in the same order as `_gradient_penalty` (the mixing weights, then the dropout mask), and the same values
        to float rounding (tested against it).

        Returns:
            `(penalty, grads)`: the scaled penalty (0-d) and `(parameter, gradient)` pairs, W1's and w2's, to add to
            those parameters' gradients.
        """
        cfg = self.cfg
        first, act, *middle, last = self.critic_
        packs = real.shape[0] // cfg.pac
        alpha = torch.rand(packs, 1, 1, device=real.device).expand(-1, cfg.pac, 1).reshape(-1, 1)  # (b, 1)
        mixed = torch.lerp(fake, real, alpha)  # alpha * real + (1 - alpha) * fake
        x = self._packs(mixed, cond)  # (packs, pac * (d + c))
        w1, w2 = first.weight, last.weight  # (h, D), (1, h)
        with torch.no_grad():
            pre = torch.addmm(first.bias, x, w1.t())  # (packs, h)
            # The dropout layer's mask (drawn as its forward would draw it) times the LeakyReLU's slope at each unit;
            # leaky_relu_backward does both in one op, where a `where` over a bool mask is far slower on CPU.
            keep = middle[0].mask(pre.shape, pre.device) if middle else torch.ones_like(pre)
            slope = torch.ops.aten.leaky_relu_backward(keep, pre, act.negative_slope, False)  # (packs, h)
            s = slope * w2  # (packs, h)
            # The critic's input gradient per pack, on the rows' columns only: the cond vectors are not interpolated.
            g = (s @ w1).view(packs, cfg.pac, -1)[..., : real.shape[1]].reshape(packs, -1)  # (packs, pac * d)
            norms = g.norm(dim=1, keepdim=True)  # (packs, 1)
            penalty = scale * cfg.gp_weight * (norms - 1).pow(2).mean()
            r = g * (2 * scale * cfg.gp_weight / packs * (norms - 1) / norms.clamp_min(1e-12))  # (packs, pac * d)
            r = F.pad(r.view(packs, cfg.pac, -1), (0, cond.shape[1])).view(packs, -1)  # (packs, D), 0 on cond columns
            grad_w1 = s.t() @ r  # (h, D)
            grad_w2 = ((r @ w1.t()) * slope).sum(0, keepdim=True)  # (1, h)
        return penalty, [(w1, grad_w1), (w2, grad_w2)]

    @torch.no_grad()
    def _generate_by_hand(self, noise: Tensor, cond: Tensor) -> tuple[Tensor, Tensor, tuple[Any, list[Tensor]]]:
        """`_generate` at the training temperature without a graph: raw packed logits (b, packed_width), activated rows
        (b, d), and what `_generator_loss_and_gradients` needs for the backward. The same random draws in the same
        order."""
        cfg = self.cfg
        forward = residual_forward if isinstance(self.generator_, ResidualGenerator) else mlp_forward
        logits, saved = forward(self.generator_, torch.cat([noise, cond], 1))
        parts = self.layout_.activate_parts(logits, tau=cfg.tau, squash=self.bounded_)
        return logits, self.layout_.unpack(torch.cat(parts, dim=1)), (saved, parts)

    @torch.no_grad()
    def _critic_loss_and_gradients(self, real: Tensor, fake: Tensor, cond: Tensor, *, penalty: bool) -> Tensor:
        """The critic's loss D(fake) - D(real) on a batch (plus the lazily scaled gradient penalty when `penalty`),
        with every critic `.grad` set by hand (`models.backprop`): the loss and gradients of the autograd step, in
        about half the tensor ops. Fake and real packs go through one forward, as there."""
        cfg = self.cfg
        packs = real.shape[0] // cfg.pac
        rows = self._packs(torch.cat([fake, real]), torch.cat([cond, cond]))
        scores, saved = mlp_forward(self.critic_, rows)  # (2 packs, 1): fake packs first
        loss = scores[:packs].mean() - scores[packs:].mean()
        d_scores = scores.new_full(scores.shape, 1.0 / packs)
        d_scores[packs:] = -1.0 / packs
        mlp_backward(self.critic_, saved, d_scores, input_grad=False)
        if penalty:
            value, grads = self._penalty_by_hand(real, fake, cond, cfg.gp_every)
            loss = loss + value
            for param, grad in grads:
                param.grad.add_(grad)
        return loss

    @torch.no_grad()
    def _generator_loss_and_gradients(
        self,
        logits: Tensor,
        fake: Tensor,
        cond: Tensor,
        level: Tensor | None,
        saved: tuple[Any, list[Tensor]],
        real: Tensor | None = None,
    ) -> Tensor:
        """The generator's loss -D(fake) (plus the condition loss, and the moment matching against `real` when
        given) for rows `_generate_by_hand` made, with every generator `.grad` set by hand; the critic's gradients are
        left alone (it is not updated by this step)."""
        cfg = self.cfg
        packs = fake.shape[0] // cfg.pac
        score, critic_saved = mlp_forward(self.critic_, self._packs(fake, cond))
        loss = -score.mean()
        d_rows = mlp_backward(
            self.critic_, critic_saved, score.new_full(score.shape, -1.0 / packs), input_grad=True, param_grads=False
        )
        d_fake = d_rows.view(fake.shape[0], -1)[:, : fake.shape[1]]  # the rows' columns, not the cond vectors'
        if real is not None:
            d_fake = d_fake.contiguous()  # the matching adds into it: a copy when cond columns are skipped
            projection = moment_projection(fake.shape[1], fake.device)
            loss = loss + moment_matching_by_hand(fake, real, cfg.moment_weight, d_fake, projection)
        generator_saved, parts = saved
        d_logits = self.layout_.activate_backward(parts, d_fake, tau=cfg.tau, squash=self.bounded_)
        if level is not None:
            loss = loss + self.cond_.condition_loss_by_hand(logits, level, self.layout_, d_logits)
        if isinstance(self.generator_, ResidualGenerator):
            residual_backward(self.generator_, generator_saved, d_logits)
        else:
            mlp_backward(self.generator_, generator_saved, d_logits, input_grad=False)
        return loss
