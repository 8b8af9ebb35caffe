"""`SpanLayout`: per-span output heads and losses over the encoder's layout, as a handful of batched tensor ops.

The encoder describes its output as `Span`s (linear values, softmax one-hots, sigmoid missing flags). `SpanLayout`
turns that list into index tensors once, so activations, losses and sampling run as a handful of batched tensor ops
(softmax spans are gathered into one padded `(n, n_spans, max_width)` block) instead of a Python loop per column.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from synthgate.models.encoders.table import Span
from synthgate.models.nn import uniform

PAD = -1e9  # logit on the padding slots of the softmax block: exp() is 0, and 0 * PAD stays finite


class SpanLayout:
    """Index tensors for the spans of an encoded vector: which features are values, flags or one-hot groups.

    Args:
        spans: the encoder's spans; `None` means every feature is a continuous value.
        n_features: width of the encoded vector.
        device: where the index tensors live (the model's device).

    Attributes:
        linear: (n_linear,) feature indices of linear (value) spans.
        sigmoid: (n_sigmoid,) feature indices of missing flags.
        soft_index: (n_soft, max_width) feature index of each slot of each softmax span, padded with 0.
        soft_mask: (n_soft, max_width) True on real slots.
        soft_spans: the softmax spans themselves, in order.
    """

    def __init__(self, spans: list[Span] | None, n_features: int, device: torch.device | str = "cpu"):
        spans = spans or [Span(f"x{i}", i, 1, "linear", "value") for i in range(n_features)]
        covered = sum(s.width for s in spans)
        assert covered == n_features, f"spans cover {covered} features but the data has {n_features}"
        self.spans = spans
        self.n_features = n_features
        self.soft_spans = [s for s in spans if s.activation == "softmax"]
        linear = torch.tensor(
            [i for s in spans if s.activation == "linear" for i in range(s.start, s.stop)], dtype=torch.long
        )
        sigmoid = torch.tensor(
            [i for s in spans if s.activation == "sigmoid" for i in range(s.start, s.stop)], dtype=torch.long
        )
        self.linear, self.sigmoid = linear.to(device), sigmoid.to(device)
        width = max((s.width for s in self.soft_spans), default=1)
        index = torch.zeros(len(self.soft_spans), width, dtype=torch.long)
        mask = torch.zeros(len(self.soft_spans), width, dtype=torch.bool)
        for row, s in enumerate(self.soft_spans):
            index[row, : s.width] = torch.arange(s.start, s.stop)
            mask[row, : s.width] = True
        self.soft_index, self.soft_mask = index.to(device), mask.to(device)
        self.soft_flat = self.soft_index[self.soft_mask]  # (sum of widths,) feature indices in slot order
        # Precomputed once so the per-step ops are adds, multiplies and index_select, never boolean-mask indexing:
        # a large finite negative (not -inf) on padding gives softmax 0 there without NaNs in 0 * log p.
        self.soft_pad = torch.where(mask, 0.0, PAD).to(device)  # (n_soft, max_width)
        self.soft_keep = mask.float().to(device)  # (n_soft, max_width): 1 on real slots, 0 on padding
        self.soft_is_mode = torch.tensor([s.role == "mode" for s in self.soft_spans], dtype=torch.bool).to(device)
        self.soft_width = torch.tensor([s.width for s in self.soft_spans], dtype=torch.long).to(device)  # (n_soft,)
        # The packed order [values | flags | softmax block padded to max_width]: a network whose output layer emits
        # it needs no gathers in its loss (two slices and a view), and one gather back to feature order when sampling
        # (`unpack`): docs/decisions.md#cpu-kernels.
        pack_index = torch.cat([linear, sigmoid, index.flatten()])  # (packed_width,)
        pack_mask = torch.cat([torch.ones(len(linear) + len(sigmoid), dtype=torch.bool), mask.flatten()])
        unpack = torch.empty(n_features, dtype=torch.long)
        unpack[pack_index[pack_mask]] = torch.arange(len(pack_index))[pack_mask]
        self.packed_width = len(pack_index)
        self.pack_index, self.pack_weight = pack_index.to(device), pack_mask.float().to(device)
        self.unpack_index = unpack.to(device)  # (n_features,) packed position of each feature
        # The encoder-side view of a row: each mode one-hot folded into one ordinal feature in [-1, 1] (modes are
        # sorted by mean, so the ordinal orders them as the values do), every other feature as is.
        column_of: list[int] = []  # the folded column each feature lands in
        rank = torch.ones(n_features)  # the weight of each feature in its folded column
        first = 0  # the next free folded column
        for s in spans:
            if s.role == "mode":
                column_of += [first] * s.width
                rank[s.start : s.stop] = torch.linspace(-1, 1, s.width) if s.width > 1 else 0.0
                first += 1
            else:
                column_of += range(first, first + s.width)
                first += s.width
        self.folded_width = first
        fold = torch.zeros(n_features, self.folded_width)
        fold[torch.arange(n_features), torch.tensor(column_of, dtype=torch.long)] = rank
        self.fold_weight = fold.to(device)  # (n_features, folded_width)

    def fold_modes(self, x: Tensor) -> Tensor:
        """(n, n_features) -> (n, folded_width): each mode one-hot replaced by its ordinal (`fold_weight`).

        An encoder input a third as wide on mode-normalised tables (docs/decisions.md#fold-modes), computed once per fit: the first layer's forward and weight gradient shrink in proportion. A row's value is
        still fully described (its mode's rank and its offset within the mode); the decoder keeps the one-hots.
        """
        return x @ self.fold_weight

    def encoder_width(self, fold: bool) -> int:
        """How many features an encoder reads: `folded_width` with `fold`, else every encoded feature."""
        return self.folded_width if fold else self.n_features

    def encoder_input(self, x: Tensor, fold: bool) -> Tensor:
        """What an encoder reads of encoded rows (n, n_features): their folded view with `fold`, else the rows.

        `fold` is the model's `fold_modes` option: checkpoints saved before the fold existed load with it off.
        """
        return self.fold_modes(x) if fold else x

    # ---------------------------------------------------------------------------------------------- softmax block
    def soft_block(self, x: Tensor) -> Tensor:
        """(n, n_soft, max_width) values of every softmax span's slots; padding slots hold feature 0's value.

        One `index_select` of the flattened slot index: `x[:, soft_index]` (advanced indexing) is slower on CPU, and
        its backward is an index_put where this one's is an index_add.
        """
        return x.index_select(1, self.soft_index.flatten()).view(x.shape[0], *self.soft_index.shape)

    def soft_logits(self, logits: Tensor) -> Tensor:
        """(n, n_soft, max_width) logits of every softmax span, padding slots at a large negative value."""
        return self.soft_block(logits) + self.soft_pad  # (n, n_soft, max_width)

    def set_onehots(self, out: Tensor, choice: Tensor) -> Tensor:
        """Write a one-hot of `choice` (n, n_soft), a slot per softmax span, into `out` (n, n_features) in place."""
        feature = self.soft_index.gather(1, choice.T).T  # (n, n_soft) feature index of each chosen slot
        return out.index_fill_(1, self.soft_flat, 0.0).scatter_(1, feature, 1.0)

    # ---------------------------------------------------------------------------------------------- activations
    def activate(self, packed: Tensor, *, tau: float | None = None, squash: Tensor | None = None) -> Tensor:
        """Apply each span's activation to raw network output in the packed order (`packed_width`); returns rows in
        feature order (n, n_features).

        Every table model's output layer emits the packed order, so the spans are three `split` views of it (whose
        backward is one `cat`) and the only gather is the final `unpack`. Against activating feature-order output this
        drops a gather of the softmax block, two scatters back and their backwards.

        Args:
            tau: when given, softmax spans use the Gumbel-softmax relaxation at this temperature and missing flags the
                binary-concrete one (Jang et al. 2017; Maddison et al. 2017), so a GAN generator stays differentiable
                through discrete columns. Noise comes from the global RNG, which `fit` seeds.
            squash: (n_linear,) bool, value features passed through tanh (the gan's mode offsets).

        Activations run in float32 (under CUDA autocast the network's output is bfloat16): softmax and sigmoid are
        where low precision hurts, and the spans are written back into one tensor of one dtype.
        """
        return self.unpack(torch.cat(self.activate_parts(packed, tau=tau, squash=squash), dim=1))

    def activate_parts(self, packed: Tensor, *, tau: float | None = None, squash: Tensor | None = None) -> list[Tensor]:
        """`activate` before its final gather: the activated values (n, n_linear), flags (n, n_sigmoid) and, with
        softmax spans, the flattened softmax block (n, n_soft * max_width), in packed order; what
        `activate_backward` needs. Random draws as in `activate`: flags' noise first, then the spans'."""
        n_lin, n_sig = self.linear.numel(), self.sigmoid.numel()
        values, flags, soft = packed.float().split([n_lin, n_sig, packed.shape[1] - n_lin - n_sig], dim=1)
        if squash is not None:
            values = torch.where(squash, torch.tanh(values), values)
        if n_sig:
            if tau is not None:
                u = torch.rand_like(flags).clamp(1e-6, 1 - 1e-6)
                flags = (flags + torch.log(u) - torch.log1p(-u)) / tau
            flags = torch.sigmoid(flags)
        parts = [values, flags]
        if self.soft_spans:
            block = self._padded_block(soft)  # (n, n_soft, w)
            block = gumbel_softmax(block, tau) if tau is not None else softmax_last(block)
            parts.append(block.flatten(1))
        return parts

    @torch.no_grad()
    def activate_backward(
        self, parts: list[Tensor], d_rows: Tensor, *, tau: float | None = None, squash: Tensor | None = None
    ) -> Tensor:
        """The gradient with respect to the raw packed output (n, packed_width), given `activate_parts`' output and
        d loss / d activated rows (n, n_features) in feature order; for hand-written training steps
        (`models.backprop`). The noise of the relaxations is a constant: each activation's derivative is a function
        of its output, tanh' = 1 - y^2, sigmoid' = y (1 - y), softmax's Jacobian y (g - <g, y>), over tau when
        tempered. The final gather's adjoint is `pack` (zeros on the padding slots)."""
        n, n_lin, n_sig = d_rows.shape[0], self.linear.numel(), self.sigmoid.numel()
        scale = 1.0 / tau if tau is not None else 1.0
        d_packed = self.pack(d_rows)  # (n, packed_width)
        d_values, d_flags, d_soft = d_packed.split([n_lin, n_sig, d_packed.shape[1] - n_lin - n_sig], dim=1)
        values, flags = parts[0], parts[1]
        if squash is not None:
            d_values = torch.where(squash, d_values * (1 - values * values), d_values)
        grads = [d_values, d_flags * flags * (1 - flags) * scale]
        if self.soft_spans:
            y = parts[2].view(n, *self.soft_pad.shape)  # (n, n_soft, w)
            g = d_soft.reshape(y.shape)
            grads.append((g - (g * y).sum(-1, keepdim=True)).mul_(y).mul_(scale).view(n, -1))
        return torch.cat(grads, dim=1)

    def packed_soft_logits(self, packed: Tensor) -> Tensor:
        """(n, n_soft, max_width) softmax-span logits of packed output, padding slots at a large negative value."""
        return self._padded_block(packed[:, self.linear.numel() + self.sigmoid.numel() :])

    def _padded_block(self, soft: Tensor) -> Tensor:
        """The softmax part of packed output (n, n_soft * max_width) as a block with padding at a large negative."""
        return soft.reshape(soft.shape[0], *self.soft_pad.shape) + self.soft_pad

    @torch.no_grad()
    def draw(self, probs: Tensor, generator: torch.Generator, *, draw_modes: bool = False) -> Tensor:
        """Turn activated output into a sample: a one-hot drawn from each category span, a 0/1 draw for each flag.

        Drawing (rather than taking the argmax) keeps rare categories at their modelled frequency. Mode spans take the
        argmax instead: the mode and its offset come from the same decoder output, and drawing the mode of two
        correlated columns independently would decorrelate them (TVAE also decodes modes by argmax). With `draw_modes`
        they are drawn too: the gan's generator was trained against Gumbel-relaxed draws of its modes, so its output
        means "this distribution over modes", and the argmax would pile every value onto the likeliest one.

        Categories are drawn by inverting each span's cumulative probabilities with one uniform per span: an exact
        categorical draw that needs a twentieth of the random numbers and none of the logarithms of the Gumbel-max
        trick (docs/decisions.md#cpu-kernels).
        """
        out = probs.clone()
        if self.soft_spans:
            block = self.soft_block(probs) * self.soft_mask  # (n, n_soft, w), 0 on padding
            cum = block.cumsum(-1)
            u = uniform((probs.shape[0], block.shape[1], 1), generator, probs.device) * cum[..., -1:]
            choice = torch.minimum((cum <= u).sum(-1), self.soft_width - 1)  # first slot whose cumsum exceeds u
            if not draw_modes:
                choice = torch.where(self.soft_is_mode, block.argmax(-1), choice)  # (n, n_soft)
            out = self.set_onehots(out, choice)
        if self.sigmoid.numel():
            u = uniform((probs.shape[0], self.sigmoid.numel()), generator, probs.device)
            out[:, self.sigmoid] = (u < probs[:, self.sigmoid]).to(probs.dtype)
        return out

    def harden(self, probs: Tensor) -> Tensor:
        """Deterministic counterpart of `draw`: argmax one-hots, flags kept as probabilities."""
        out = probs.clone()
        if self.soft_spans:
            out = self.set_onehots(out, self.soft_logits(probs).argmax(-1))
        return out

    # ---------------------------------------------------------------------------------------------- losses
    def pack(self, x: Tensor) -> Tensor:
        """(n, n_features) in feature order -> (n, packed_width) in packed order, zeros on the padding slots."""
        return x.index_select(1, self.pack_index) * self.pack_weight  # index_select: faster than x[:, index] on CPU

    def marginal_output(self, mean: Tensor, floor: float = 1e-4) -> Tensor:
        """The raw packed output (packed_width,) whose activation is the column marginals: a network emitting it for
        every row models the columns as independent.

        Args:
            mean: (n_features,) mean of the encoded rows in feature order: the values' means, the flags' and every
                one-hot slot's frequencies.
            floor: the least frequency, so an absent level or a flag that never fires gets a finite logit.

        Returns:
            values at their mean, flags at the logit of their frequency, softmax slots at the log of theirs (any
            constant per span gives the same softmax), 0 on the padding slots.
        """
        packed = self.pack(mean[None])[0]
        n_lin, n_sig = self.linear.numel(), self.sigmoid.numel()
        out = packed.clone()
        flags = packed[n_lin : n_lin + n_sig].clamp(floor, 1 - floor)
        out[n_lin : n_lin + n_sig] = torch.log(flags) - torch.log1p(-flags)
        out[n_lin + n_sig :] = packed[n_lin + n_sig :].clamp(min=floor).log() * self.soft_keep.flatten()
        return out

    def unpack(self, packed: Tensor) -> Tensor:
        """(n, packed_width) in packed order -> (n, n_features) in feature order (padding slots dropped)."""
        return packed.index_select(1, self.unpack_index)

    def packed_loss(self, out: Tensor, target: Tensor, log_sigma: Tensor | None = None) -> Tensor:
        """Mean over rows of the negative log-likelihood of `target` under the decoder output `out`, both packed.

        Linear features: Gaussian NLL with per-feature `log_sigma` (squared error / 2 when `None`). Softmax spans:
        cross-entropy against the one-hot. Missing flags: binary cross-entropy. This is the reconstruction term of
        the ELBO (Kingma & Welling 2014, eq. 10) for a factorised decoder, averaged over the batch.

        Each term is reduced to a scalar straight away and the output is cut by one `split` (whose backward is one
        `cat`), not per-row sums and three slices, whose backwards each zero-fill and copy a whole output.

        Returns:
            a 0-d tensor.
        """
        n, n_lin, n_sig = out.shape[0], self.linear.numel(), self.sigmoid.numel()
        sizes = [n_lin, n_sig, out.shape[1] - n_lin - n_sig]
        values, flags, soft = out.split(sizes, dim=1)
        values_t, flags_t, soft_t = target.split(sizes, dim=1)
        loss = out.new_zeros(())
        if n_lin:
            err = values - values_t  # (n, n_linear)
            if log_sigma is None:
                loss = loss + 0.5 * (err * err).sum()
            else:
                loss = loss + 0.5 * (err * err * torch.exp(-2 * log_sigma)).sum() + n * log_sigma.sum()
        if n_sig:
            loss = loss + F.binary_cross_entropy_with_logits(flags, flags_t, reduction="sum")
        if self.soft_spans:
            log_p = softmax_last(self._padded_block(soft), log=True)  # (n, n_soft, w)
            loss = loss - (soft_t.reshape(log_p.shape) * log_p).sum()  # one-hot targets, 0 on padding
        return loss / n

    @torch.no_grad()
    def packed_loss_grad(
        self, out: Tensor, target: Tensor, log_sigma: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """`packed_loss` and its gradients without autograd, for hand-written training steps (`models.backprop`).

        Each term's gradient with respect to its output is the activated output minus the target: (value - target) /
        sigma^2 for values, sigmoid - target for flags, softmax - one-hot for spans (0 on the padding slots, where
        both are 0); all over the n rows of the mean.

        Returns:
            `(loss, d_out, d_log_sigma)`: the 0-d loss, (n, packed_width) d loss / d out, and (n_linear,)
            d loss / d log_sigma (None without `log_sigma`).
        """
        n, n_lin, n_sig = out.shape[0], self.linear.numel(), self.sigmoid.numel()
        sizes = [n_lin, n_sig, out.shape[1] - n_lin - n_sig]
        # The gradient is written in place, part by part, into one (n, packed_width) tensor that starts as out -
        # target (the values' error); each op here costs about as much as a small product on this CPU, and a cat of
        # the parts cost one more.
        grad = out - target
        err, d_flags, d_soft = grad.split(sizes, dim=1)
        _, flags, soft = out.split(sizes, dim=1)
        _, flags_t, soft_t = target.split(sizes, dim=1)
        loss, summed, d_log_sigma = None, None, None  # the mean over rows, and a sum over rows still to divide by n
        if n_lin:
            if log_sigma is None:
                loss = (err * err).sum().mul_(0.5 / n)
            else:
                precision = log_sigma.mul(-2.0).exp_()  # 1 / sigma^2
                squares = (err * err).sum(0).mul_(precision)  # (n_linear,) sums of err^2 / sigma^2
                err.mul_(precision)
                loss = torch.add(log_sigma, squares, alpha=0.5 / n).sum()  # (0.5 squares + n log_sigma) / n
                d_log_sigma = squares.mul_(-1.0 / n).add_(1.0)  # 1 - mean of err^2 / sigma^2
        if n_sig:
            summed = F.binary_cross_entropy_with_logits(flags, flags_t, reduction="sum")
            torch.sigmoid(flags, out=d_flags).sub_(flags_t)
        if self.soft_spans:
            log_p = softmax_last(self._padded_block(soft), log=True)  # (n, n_soft, w)
            one_hot = soft_t.reshape(log_p.shape)  # a view: the target's rows are contiguous
            cross_entropy = (one_hot * log_p).sum()  # one-hot targets, 0 on padding
            summed = cross_entropy.neg_() if summed is None else summed.sub_(cross_entropy)
            # exp(log p), 0 on the padding. The vectorised exp takes a slow path on the padding's -1e9, so it is
            # clamped at -80 (exp is still a normal float there) and the padding zeroed after; in place, then copied
            # into the gradient, as an exp into strided columns is slower (docs/decisions.md#cpu-kernels).
            probs = log_p.clamp_(min=-80.0).exp_().mul_(self.soft_keep).sub_(one_hot)
            d_soft.view(log_p.shape).copy_(probs)
        if summed is not None:
            loss = summed.div_(n) if loss is None else loss.add_(summed, alpha=1.0 / n)
        return (out.new_zeros(()) if loss is None else loss), grad.div_(n), d_log_sigma


class TrainingRows:
    """A fit's encoded rows (its training rows, or its validation rows) in the two forms an encoder-decoder step
    reads: the encoder's input and the packed rows (the decoder's target), both made once per fit on the device.

    A batch of row indices gathers both; the whole table (`index` None, see `models.training.train`'s `indices`)
    gathers nothing: a small table's epoch is one step on it. Packing once costs a copy of the table in packed order
    (about as large as the encoded rows); packing each batch cost a gather of its encoded rows, a column gather and a
    product per step.
    """

    def __init__(self, layout: SpanLayout, x: Tensor, fold_modes: bool):
        self.inputs = layout.encoder_input(x, fold_modes)  # (n, encoder width)
        self.packed = layout.pack(x)  # (n, packed_width)

    def take(self, index: Tensor | None) -> tuple[Tensor, Tensor]:
        """`(encoder input, packed rows)` of the batch `index` (b,), or of every row when `index` is None."""
        if index is None:
            return self.inputs, self.packed
        return self.inputs.index_select(0, index), self.packed.index_select(
            0, index
        )  # index_select: faster than x[index] on CPU


def gumbel_softmax(logits: Tensor, tau: float) -> Tensor:
    """The Gumbel-softmax relaxation over the last dimension (Jang et al. 2017), from the global RNG.

    Same maths as `torch.nn.functional.gumbel_softmax`, but the Gumbel noise is -log(-log(U)) from uniforms, cheaper on
    CPU than torch's `exponential_` (docs/decisions.md#cpu-kernels).
    """
    u = torch.rand_like(logits).clamp_(1e-10, 1.0 - 1e-7)
    return softmax_last((logits - torch.log(-torch.log(u))) / tau)


# PyTorch's CPU softmax over a last dimension narrower than 8 (the float32 lanes of an AVX2 register) runs a scalar
# loop, so large blocks are padded to 8; small ones keep the plain call: docs/decisions.md#softmax-padding.
SOFTMAX_MIN_WIDTH = 8
SOFTMAX_PAD_MIN_VALUES = 1 << 16


def softmax_last(block: Tensor, *, log: bool = False) -> Tensor:
    """`torch.softmax` (or `log_softmax`) over the last dimension; on CPU a large block narrower than
    `SOFTMAX_MIN_WIDTH` is padded to it with `PAD` logits (probability 0) first and the result cut back, a strided
    view."""
    fn = torch.log_softmax if log else torch.softmax
    width = block.shape[-1]
    if block.device.type != "cpu" or width >= SOFTMAX_MIN_WIDTH or block.numel() < SOFTMAX_PAD_MIN_VALUES:
        return fn(block, dim=-1)
    return fn(F.pad(block, (0, SOFTMAX_MIN_WIDTH - width), value=PAD), dim=-1)[..., :width]


# -------------------------------------------------------------------------------------------------- model plumbing
def packed_decoder_state(state: dict[str, Tensor], layout: SpanLayout, prefix: str, *, packed: bool) -> dict:
    """A decoder's weights for the packed output order; checkpoints saved before it (`packed` False) are converted.

    The old decoder's last linear layer (an `MLP`'s highest-numbered one, or a `head`) emitted features in feature
    order: its rows are gathered into packed order (padding rows zero), which decodes exactly the same samples.
    """
    if packed:
        return state
    if prefix + ".head.weight" in state:
        last = prefix + ".head."
    else:
        layers = [k for k in state if k.startswith(prefix + ".") and k.endswith(".weight")]
        last = max(layers, key=lambda k: int(k.split(".")[-2]))[: -len("weight")]  # e.g. "decoder.2."
    state = dict(state)
    weight = layout.pack_weight.to(state[last + "weight"].device)
    index = layout.pack_index.to(weight.device)
    state[last + "weight"] = state[last + "weight"][index] * weight[:, None]
    state[last + "bias"] = state[last + "bias"][index] * weight
    return state


def spans_to_meta(spans: list[Span] | None) -> list[dict] | None:
    """Spans as JSON-able dicts for `meta.json` (the checkpoint stays tensors + JSON, never pickle)."""
    return [vars(s).copy() for s in spans] if spans else None


def spans_from_meta(data: list[dict] | None) -> list[Span] | None:
    return [Span(**s) for s in data] if data else None
