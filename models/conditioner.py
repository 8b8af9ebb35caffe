"""CTGAN's conditional vector and training-by-sampling (Xu et al. 2019, sec. 4.3), vectorised on the device."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from synthgate.models.layout import SpanLayout


class Conditioner:
    """The conditional vector over categorical spans and training-by-sampling, vectorised.

    Global level ids run over all categorical spans in order, so a cond vector is `one_hot(level_id, n_levels)`.
    For each level the rows having it are stored contiguously in `rows`, from `offset[g]`, `count[g]` of them, so a
    real row for a drawn level is one gather.

    Attributes:
        n_levels: width of the cond vector.
        span_of: (n_levels,) index of the categorical span each level belongs to.
        level_in_span: (n_levels,) position of each level inside its span.
        soft_row: (n_cond_spans,) row of each categorical span in the `SpanLayout` softmax block.
        p_train: (n_levels,) log-frequency draw probabilities (span uniform, then level by log(1 + count)).
        p_sample: (n_levels,) empirical draw probabilities for unconditional sampling.
    """

    def __init__(self, layout: SpanLayout, device: torch.device):
        self.spans = [s for s in layout.spans if s.activation == "softmax" and s.role == "category"]
        soft_rows = {s: i for i, s in enumerate(layout.soft_spans)}
        self.soft_row = torch.tensor([soft_rows[s] for s in self.spans], dtype=torch.long, device=device)
        self.n_levels = sum(s.width for s in self.spans)
        self.span_of = torch.tensor(
            [i for i, s in enumerate(self.spans) for _ in range(s.width)], dtype=torch.long, device=device
        )
        self.level_in_span = torch.tensor([j for s in self.spans for j in range(s.width)], dtype=torch.long).to(device)
        self.span_start = torch.tensor([s.start for s in self.spans], dtype=torch.long, device=device)
        # Filled by `fit_counts` (training data) or `load_state` (checkpoint).
        self.count = torch.zeros(self.n_levels, device=device)

    def fit_counts(self, x: Tensor) -> None:
        """Index the rows of `x` (n, d) by level; set the draw probabilities from the level counts."""
        n = x.shape[0]
        rows, counts, offsets = [], [], []
        for i, s in enumerate(self.spans):  # one sort per categorical column, vectorised over rows
            code = x[:, s.start : s.stop].argmax(1)  # (n,)
            count = torch.bincount(code, minlength=s.width)  # (w,)
            rows.append(torch.argsort(code, stable=True))  # rows grouped by level
            counts.append(count)
            offsets.append(i * n + torch.cumsum(count, 0) - count)  # where each level's rows begin in `rows`
        empty = torch.zeros(0, dtype=torch.long, device=x.device)
        self.rows = torch.cat(rows) if rows else empty  # (n_spans * n,)
        self.count = torch.cat(counts).float() if counts else empty.float()  # (n_levels,)
        self.offset = torch.cat(offsets) if offsets else empty  # (n_levels,)
        self._set_probabilities()

    def _set_probabilities(self) -> None:
        n_spans = max(len(self.spans), 1)
        log_count = torch.log1p(self.count)
        per_span = torch.zeros(len(self.spans), device=self.count.device).index_add_(0, self.span_of, log_count)
        self.p_train = log_count / per_span[self.span_of].clamp(min=1e-12) / n_spans
        per_span_n = torch.zeros(len(self.spans), device=self.count.device).index_add_(0, self.span_of, self.count)
        self.p_sample = self.count / per_span_n[self.span_of].clamp(min=1e-12) / n_spans

    def draw_training(self, b: int) -> tuple[Tensor, Tensor]:
        """(b,) level ids drawn by log-frequency and (b,) indices of real rows having them (global RNG, seeded)."""
        level = torch.multinomial(self.p_train, b, replacement=True)  # (b,)
        pick = (torch.rand(b, device=level.device) * self.count[level]).long()  # (b,) position within the level
        return level, self.rows[self.offset[level] + pick]

    def one_hot(self, level: Tensor) -> Tensor:
        return F.one_hot(level, self.n_levels).float()  # (b, n_levels)

    def _conditioned_logits(self, logits: Tensor, level: Tensor, layout: SpanLayout) -> tuple[Tensor, Tensor]:
        """Each row's logits (b, w) for its conditioned span, from raw packed output, and where they sit in the softmax
        block (`packed_soft_logits`): (b, 1, w) indices along its span dimension."""
        block = layout.packed_soft_logits(logits)  # (b, n_soft, w)
        span = self.soft_row[self.span_of[level]]  # (b,) the conditioned span's row in the block
        index = span[:, None, None].expand(-1, 1, block.shape[2])  # (b, 1, w)
        return block.gather(1, index).squeeze(1), index

    def condition_loss(self, logits: Tensor, level: Tensor, layout: SpanLayout) -> Tensor:
        """Cross-entropy of the generator's raw packed output for each row's conditioned span (Xu et al. 2019,
        sec. 4.3)."""
        chosen, _ = self._conditioned_logits(logits, level, layout)  # (b, w)
        return F.cross_entropy(chosen.float(), self.level_in_span[level])

    @torch.no_grad()
    def condition_loss_by_hand(self, logits: Tensor, level: Tensor, layout: SpanLayout, d_logits: Tensor) -> Tensor:
        """`condition_loss` without autograd: returns the loss and adds its gradient with respect to `logits` into
        `d_logits` (b, packed_width), in place. Cross-entropy's gradient is softmax minus the one-hot, over b rows,
        on the conditioned span's slots only (0 on its padding, whose probability is 0)."""
        b, offset = logits.shape[0], layout.linear.numel() + layout.sigmoid.numel()
        chosen, index = self._conditioned_logits(logits, level, layout)
        log_p = torch.log_softmax(chosen, dim=1)  # (b, w)
        target = self.level_in_span[level][:, None]  # (b, 1)
        loss = -log_p.gather(1, target).mean()
        d_chosen = log_p.exp_().scatter_add_(1, target, log_p.new_full(target.shape, -1.0)).div_(b)  # (b, w)
        d_logits[:, offset:].view(b, *layout.soft_pad.shape).scatter_add_(1, index, d_chosen[:, None, :])
        return loss

    def from_conditions(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        """Levels fixed by user conditions (n, d), NaN = free: per row the first fully given categorical span.

        Returns:
            `(level, has)`: (n,) level ids (0 where none) and (n,) bool, True where a categorical span was fixed.
        """
        n = cond.shape[0]
        level = torch.zeros(n, dtype=torch.long, device=cond.device)
        has = torch.zeros(n, dtype=torch.bool, device=cond.device)
        offset = 0
        for s in self.spans:  # one small op per categorical column, vectorised over rows
            part = cond[:, s.start : s.stop]  # (n, w)
            given = ~torch.isnan(part).any(1) & ~has
            level = torch.where(given, offset + part.nan_to_num(-1).argmax(1), level)
            has = has | given
            offset += s.width
        return level, has
