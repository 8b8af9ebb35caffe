"""The Gaussian mixture's maths as module-level tensor functions (scikit-learn's layout): log densities on precision
Cholesky factors with `reg_covar` on the diagonal (Bishop, PRML 9.2), M-step covariances, categorical draws, and the
split of encoded rows into the continuous block and the one-hot groups."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from synthgate.models.encoders.table import Span
from synthgate.schemas.errors import InvalidInputError


def precision_cholesky(cov: Tensor) -> Tensor:
    """(k, d, d) covariances -> (k, d, d) upper factors P with P P^T = inverse covariance."""
    chol, info = torch.linalg.cholesky_ex(cov)
    if bool((info > 0).any()):
        raise InvalidInputError(
            "a component's covariance is singular; decrease n_components, increase reg_covar, or scale the input data"
        )
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(cov)
    return torch.linalg.solve_triangular(chol, eye, upper=False).transpose(-1, -2)


def gaussian_log_prob(x: Tensor, means: Tensor, prec_chol: Tensor) -> Tensor:
    """log N(x | mean_k, cov_k) for every row and component: (n, d), (k, d), (k, d, d) -> (n, k)."""
    n, d = x.shape
    if d == 0:
        return torch.zeros(n, means.shape[0], dtype=x.dtype, device=x.device)
    log_det = torch.log(torch.diagonal(prec_chol, dim1=-2, dim2=-1)).sum(-1)  # (k,)
    shifted = torch.einsum("kd,kde->ke", means, prec_chol)  # (k, d)
    maha = torch.empty(n, means.shape[0], dtype=x.dtype, device=x.device)
    # One (n, d) @ (d, d) product per component: an einsum over all of them at once materialises an (n, k, d) tensor,
    # hundreds of MB on a large table.
    for j in range(means.shape[0]):
        y = x @ prec_chol[j] - shifted[j]  # (n, d)
        maha[:, j] = (y * y).sum(1)
    return -0.5 * (d * math.log(2 * math.pi) + maha) + log_det


def weighted_covariances(x: Tensor, resp: Tensor, nk: Tensor, means: Tensor, reg: float) -> Tensor:
    """M-step covariances: (n, d), (n, k), (k,), (k, d) -> (k, d, d)."""
    k, d = means.shape
    cov = torch.empty(k, d, d, dtype=x.dtype, device=x.device)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    for j in range(k):  # k is small; each step is one (d, n) @ (n, d) product
        diff = x - means[j]
        cov[j] = (resp[:, j : j + 1] * diff).T @ diff / nk[j] + reg * eye
    return cov


def draw_levels(probs: Tensor, comp: Tensor, gen: torch.Generator) -> Tensor:
    """One categorical draw per row from its component's level probabilities, by inverse CDF.

    `torch.multinomial(probs[comp], 1)` builds an (n, levels) matrix and samples row by row; one uniform per row and a
    search in the component's cumulative probabilities does the same draw in a few vector operations.
    """
    cum = probs.cumsum(1)  # (k, levels)
    cum[:, -1] = 1.0  # rounding must not leave a gap above the last level
    u = torch.rand(comp.shape[0], 1, dtype=probs.dtype, device=probs.device, generator=gen)
    return torch.searchsorted(cum[comp], u).squeeze(1).clamp(max=probs.shape[1] - 1)


@dataclass
class MixtureLayout:
    """Which encoded dimensions are continuous and which form categorical groups (softmax spans, missing flags)."""

    continuous: Tensor  # (d_c,) column indices
    groups: list[Tensor]  # per categorical group: its column indices (a missing flag is a 2-level group)
    binary: list[bool]  # per group: True when it is a single 0/1 column (missing indicator)

    @classmethod
    def from_spans(cls, spans: list[Span] | None, n_features: int, device: torch.device) -> MixtureLayout:
        if not spans:
            return cls(torch.arange(n_features, device=device), [], [])
        cont, groups, binary = [], [], []
        for span in spans:
            idx = torch.arange(span.start, span.stop, device=device)
            if span.activation == "linear":
                cont.extend(idx.tolist())
            else:
                groups.append(idx)
                binary.append(span.activation == "sigmoid")
        return cls(torch.tensor(cont, dtype=torch.long, device=device), groups, binary)


@dataclass
class PreparedRows:
    """The encoded rows split once into the continuous block and the concatenated one-hot groups."""

    continuous: Tensor  # (n, d_c)
    onehot: Tensor  # (n, total levels)
    widths: list[int]  # levels per group, in order
    gram_chol: Tensor | None = None  # Cholesky factor of onehot^T onehot + ridge I, when the means shift with levels

    @classmethod
    def of(cls, x: Tensor, layout: MixtureLayout, *, ridge: float | None = None) -> PreparedRows:
        """Slice `x` once; with a `ridge`, also factor the level shifts' normal equations (fixed for the whole fit)."""
        groups = group_onehot(x, layout)
        onehot = torch.cat(groups, dim=1) if groups else x[:, :0]
        gram_chol = None
        if ridge is not None and groups:
            eye = torch.eye(onehot.shape[1], dtype=onehot.dtype, device=onehot.device)
            gram_chol = torch.linalg.cholesky(onehot.T @ onehot + ridge * eye)
        return cls(x[:, layout.continuous], onehot, [g.shape[1] for g in groups], gram_chol)

    def shifted(self, coef: Tensor | None) -> Tensor:
        """The continuous block minus each row's level shifts (n, d_c): what the components' Gaussians model."""
        return self.continuous if coef is None else self.continuous - self.onehot @ coef


def group_onehot(x: Tensor, layout: MixtureLayout) -> list[Tensor]:
    """Per categorical group, an (n, levels) one-hot; a 0/1 flag becomes the two levels [0, 1]."""
    out = []
    for idx, is_binary in zip(layout.groups, layout.binary, strict=True):
        block = x[:, idx]
        if is_binary:
            block = torch.cat([1 - block, block], dim=1)
        out.append(block)
    return out


class StackedGroups:
    """A mixture's categorical groups side by side: the gather that builds their one-hots from encoded rows, their
    log-probabilities stacked (total levels, k), and which group each level belongs to."""

    def __init__(self, layout: MixtureLayout, level_probs: list[Tensor], n_components: int, device: torch.device):
        source, scale, shift, group = [], [], [], []
        for g, (idx, is_binary) in enumerate(zip(layout.groups, layout.binary, strict=True)):
            cols = idx.tolist()
            if is_binary:  # [1 - flag, flag]
                source += [cols[0], cols[0]]
                scale += [-1.0, 1.0]
                shift += [1.0, 0.0]
            else:
                source += cols
                scale += [1.0] * len(cols)
                shift += [0.0] * len(cols)
            group += [g] * (2 if is_binary else len(cols))
        self.n_groups = len(layout.groups)
        self.source = torch.tensor(source, dtype=torch.long, device=device)
        self.scale = torch.tensor(scale, dtype=torch.float64, device=device)
        self.shift = torch.tensor(shift, dtype=torch.float64, device=device)
        self.first = torch.tensor([int(idx[0]) for idx in layout.groups], dtype=torch.long, device=device)
        self.member = F.one_hot(torch.tensor(group, dtype=torch.long), max(self.n_groups, 1)).to(device, torch.float64)
        self.log_p = torch.zeros(0, n_components, dtype=torch.float64, device=device)  # (total levels, k)
        if level_probs:
            self.log_p = torch.cat([torch.log(p).T for p in level_probs]).to(torch.float64)

    def onehot(self, rows: Tensor) -> Tensor:
        """(n, total levels) one-hots of every group, in order."""
        return torch.addcmul(self.shift, rows[:, self.source], self.scale)
