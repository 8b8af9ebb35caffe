"""Per-row anomaly scores from a fitted table model, each in its family's own terms, with per-column parts.

A model that can generate rows can also say how implausible a row is. Every score here is "higher means less
plausible" and, where the family has one, a negative log-likelihood or a bound on it:

- `gmm`: the exact negative log-likelihood of the mixture, continuous block and categorical / missing-flag groups
  together (the same density `GaussianMixture.score_samples` returns).
- `vae`: the negative importance-weighted bound (Burda et al. 2016, "Importance Weighted Autoencoders", eq. 8) with
  `n_samples` posterior draws from fixed noise shared by all rows, so a row gets the same score in any batch; one
  draw is the negative ELBO.
- `autoencoder`: the reconstruction loss the model trained on plus the negative log-density of the row's code under
  the latent mixture (the ex-post density the model samples from).
- `arn`: the chain-rule negative log-probability of the row's tokens, sum over columns of -log p(token_j | tokens
  before j), plus a Gaussian tail in z-score units for a number outside the training range (where the model itself
  gives probability zero).
- `cart`: the same chain rule, each column's token read off the smoothed leaf its tree routes the row to.
- `marginal`: the same chain rule along the tree of noisy marginals (root, then each column given its parent), plus
  each fine token's share of its coarse group.
- `gan`: minus the critic's output on the row (repeated to fill a PacGAN pack, averaged over the row's own
  conditional levels). Weaker: a Wasserstein critic is trained to separate real from generated rows, not to
  estimate a density, so its ranking of unusual real rows is only as good as the generator was bad there.

Each score comes with per-feature contributions in the encoded layout; `column_parts` sums them per encoded column,
so the columns that make a row implausible can be named. The parts of a mixture or a latent model do not add up to
the whole score: the share that belongs to no column (which component, where in latent space) is left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from synthgate.models.base import check_matrix, require_fitted
from synthgate.models.inference import inference_steps, run_steps

if TYPE_CHECKING:
    from synthgate.models.encoders.table import Span
    from synthgate.models.layout import SpanLayout

CHUNK_ROWS = 65_536  # rows scored at once: a bounded working set, whatever the batch size
VAE_CHUNK_ROWS = 1024  # rows per vae chunk: K draws each, a decoder batch that stays in cache
ARN_CHUNK_ROWS = 1024  # rows per arn chunk: (columns x rows x hidden) activations of a few MB
EXP_FLOOR = -80.0  # exp of a difference below this is < 2e-35: floored, see `_logsumexp_`
SCORE_SEED = 0  # the vae's posterior draws: a row scored twice gets the same score


@dataclass
class RowScores:
    """Anomaly scores of encoded rows and each encoded feature's share of them.

    Attributes:
        score: (n,) float64, higher means less plausible.
        features: (n, n_features) float64 contribution of each encoded feature (0 where a feature carries none).
    """

    score: Tensor
    features: Tensor


def score_in_chunks(rows: Tensor, fn: Callable[[Tensor], RowScores], chunk_rows: int = CHUNK_ROWS) -> RowScores:
    """`fn` over `rows` in chunks of `chunk_rows`, written into float64 CPU tensors allocated once."""
    rows = check_matrix(rows, "rows")
    n = rows.shape[0]
    if n == 0:
        part = fn(rows)
        return RowScores(part.score.detach().double().cpu(), part.features.detach().double().cpu())
    score = torch.empty(n, dtype=torch.float64)
    features: Tensor | None = None
    for i in range(0, n, chunk_rows):
        part = fn(rows[i : i + chunk_rows])
        if features is None:
            features = torch.empty(n, part.features.shape[1], dtype=torch.float64)
        score[i : i + chunk_rows] = part.score.detach()
        features[i : i + chunk_rows] = part.features.detach()
    assert features is not None
    return RowScores(score, features)


def column_parts(features: Tensor, spans: list[Span] | None) -> tuple[list[str], np.ndarray]:
    """Sum per-feature contributions (n, n_features) into one column per encoded column, in first-seen order.

    Returns:
        `(names, parts)`: the encoded columns' names and an (n, n_columns) float64 array.
    """
    feats = features.double().cpu().numpy()
    if not spans:
        return [f"x{i}" for i in range(feats.shape[1])], feats
    names = list(dict.fromkeys(s.column for s in spans))
    if np.isfinite(feats).all():  # one product sums every span (an inf would spread through it as inf * 0)
        member = np.zeros((feats.shape[1], len(names)))
        for s in spans:
            member[s.start : s.stop, names.index(s.column)] = 1.0
        return names, feats @ member
    out = np.zeros((feats.shape[0], len(names)))
    for s in spans:
        out[:, names.index(s.column)] += feats[:, s.start : s.stop].sum(1)
    return names, out


# ---------------------------------------------------------------------------------------------------------- gmm
@torch.no_grad()
def gmm_scores(model: Any, x: Tensor) -> RowScores:
    """Exact negative log-likelihood of a `GaussianMixture` (or its DP variant), with per-feature parts.

    Per component k, log N(x | mu_k, S_k) splits exactly over dimensions as
    sum_j [-0.5 log 2 pi + log P_jj - 0.5 d_j (Lambda d)_j], d = x - mu_k, Lambda = P P^T the precision; each
    categorical group adds log p_k(level). A dimension's part is its term averaged over the row's responsibilities.
    Every categorical group is read in one product: the groups' one-hots side by side (a missing flag as its two
    levels) against their stacked log-probabilities.
    """
    from synthgate.models.gmm_math import StackedGroups

    require_fitted(model)
    layout = model.layout_
    device = model.means_.device
    n_comp = model.n_components_
    precision = model.precisions_cholesky_ @ model.precisions_cholesky_.transpose(1, 2)  # (k, d_c, d_c)
    const = -0.5 * math.log(2 * math.pi) + torch.log(torch.diagonal(model.precisions_cholesky_, dim1=1, dim2=2))
    log_w = torch.log(model.weights_)
    coef = getattr(model, "coef_", None)
    levels = StackedGroups(layout, model.level_probs_, n_comp, device)

    def one(rows: Tensor) -> RowScores:
        rows = rows.to(device, torch.float64)
        n = rows.shape[0]
        onehot = levels.onehot(rows)  # (n, total levels)
        values = rows[:, layout.continuous]
        if coef is not None:
            values = values - onehot @ coef  # the row's level shifts (`PreparedRows.shifted`)
        joint = log_w + onehot @ levels.log_p  # (n, k)
        quad = []  # per component (n, d_c): d_j (Lambda d)_j
        for j in range(n_comp):
            diff = values - model.means_[j]
            q = diff * (diff @ precision[j])
            joint[:, j] += const[j].sum() - 0.5 * q.sum(1)
            quad.append(q)
        log_px = torch.logsumexp(joint, dim=1)  # (n,)
        resp = torch.exp(joint - log_px[:, None])  # (n, k) responsibilities
        features = torch.zeros(n, rows.shape[1], dtype=torch.float64, device=rows.device)
        if len(layout.continuous):
            cont = -(resp @ const)
            for j in range(n_comp):
                cont += 0.5 * resp[:, j : j + 1] * quad[j]
            features[:, layout.continuous] = cont
        if levels.n_groups:  # a group's part sits on its first feature
            features[:, levels.first] = -((onehot * (resp @ levels.log_p.T)) @ levels.member)
        return RowScores(-log_px, features)

    return score_in_chunks(x, one)


# ------------------------------------------------------------------------------------------- encoder-decoders
def _packed_nll(layout: SpanLayout, out: Tensor, target: Tensor, log_sigma: Tensor | None) -> Tensor:
    """Per-slot negative log-likelihood (..., packed_width) of packed `target` under decoder output `out`.

    The per-row version of `SpanLayout.packed_loss`: Gaussian values (squared error / 2 without `log_sigma`), binary
    cross-entropy for flags, cross-entropy on each one-hot's observed slot (0 on the others and on padding).
    """
    n_lin, n_sig = layout.linear.numel(), layout.sigmoid.numel()
    sizes = [n_lin, n_sig, out.shape[-1] - n_lin - n_sig]
    values, flags, soft = out.float().split(sizes, dim=-1)
    values_t, flags_t, soft_t = target.split(sizes, dim=-1)
    err = values - values_t
    if log_sigma is None:
        nll_values = 0.5 * err * err
    else:
        nll_values = 0.5 * err * err * torch.exp(-2 * log_sigma) + log_sigma + 0.5 * math.log(2 * math.pi)
    nll_flags = F.binary_cross_entropy_with_logits(flags, flags_t.expand_as(flags), reduction="none")
    parts = [nll_values, nll_flags]
    if layout.soft_spans:
        block = soft.reshape(*soft.shape[:-1], *layout.soft_pad.shape) + layout.soft_pad
        log_p = torch.log_softmax(block, dim=-1).clamp(min=-1e4)  # (..., n_soft, w); padding's -1e9 stays finite
        parts.append((-soft_t.reshape(*soft_t.shape[:-1], *layout.soft_pad.shape) * log_p).flatten(-2))
    return torch.cat(parts, dim=-1)


def _unpack_parts(layout: SpanLayout, packed_nll: Tensor) -> Tensor:
    """(n, packed_width) per-slot parts -> (n, n_features) in feature order (padding slots dropped)."""
    return layout.unpack(packed_nll).double()


@torch.inference_mode()
def vae_scores(model: Any, x: Tensor, *, n_samples: int = 8) -> RowScores:
    """Negative importance-weighted bound of a `VAE` with `n_samples` posterior draws (1: the negative ELBO).

    log p(x) >= log mean_k p(x | z_k) p(z_k) / q(z_k | x), z_k ~ q(z | x). A feature's part is its reconstruction
    NLL averaged with the normalised importance weights; the latent term (prior against posterior) is nobody's.
    """
    require_fitted(model)
    layout, cfg, module = model.layout_, model.cfg, model.module_
    module.eval()
    device = layout.linear.device
    log_sigma = model._sigma()
    gen = torch.Generator(device=device)
    gen.manual_seed(SCORE_SEED)
    # The same K standard-normal draws for every row: a row's score does not depend on the batch it came in.
    shared = torch.randn(n_samples, 1, cfg.latent_dim, generator=gen, device=device)
    log_q_eps = (-0.5 * shared * shared - 0.5 * math.log(2 * math.pi)).sum(-1)  # (K, 1): log N(eps), fixed

    decoder = inference_steps(module.decoder, device=device)

    def one(rows: Tensor) -> RowScores:
        rows = rows.to(device)
        n = rows.shape[0]
        mu, logvar = module.encode(layout.encoder_input(rows, cfg.fold_modes))
        z = torch.addcmul(mu, torch.exp(0.5 * logvar), shared)  # (K, n, latent)
        out = run_steps(decoder, z.view(-1, mu.shape[1])).view(n_samples, n, -1)
        packed_rows = layout.pack(rows)
        values, flags, soft = _vae_nll_parts(layout, out, packed_rows, log_sigma)  # (K, n, *) each
        log_pz = -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        log_qz = log_q_eps - 0.5 * logvar.sum(-1)  # log q(z|x) = log N(eps) - sum log std
        log_px_z = -(values.sum(-1) + flags.sum(-1) + soft.sum(-1))
        log_w = (log_px_z + log_pz - log_qz).double()  # (K, n)
        bound = torch.logsumexp(log_w, dim=0) - math.log(n_samples)
        w = torch.softmax(log_w, dim=0).float()[..., None]  # (K, n, 1)
        target = packed_rows[:, layout.linear.numel() + layout.sigmoid.numel() :]
        # A softmax span's NLL sits on its observed slot (the target one-hot times the span's NLL).
        soft_slots = target.view(n, *layout.soft_pad.shape) * (w * soft).sum(0)[..., None]
        packed = torch.cat([(w * values).sum(0), (w * flags).sum(0), soft_slots.flatten(1)], dim=1)
        return RowScores(-bound, _unpack_parts(layout, packed))

    return score_in_chunks(x, one, chunk_rows=VAE_CHUNK_ROWS)


def _vae_nll_parts(layout: SpanLayout, out: Tensor, target: Tensor, log_sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-value, per-flag and per-softmax-span NLL (K, n, *) of packed `target` (n, packed) under `out` (K, n, packed).

    The same terms as `_packed_nll`, but a softmax span's NLL is computed per span, logsumexp minus the observed
    slot's logit, not as a full (K, n, packed) log-softmax: the slots a one-hot target leaves at 0 cost nothing.
    Softmax targets are one-hots (a level, a mode) or all zero (a span with nothing observed, NLL 0).
    """
    n_lin, n_sig = layout.linear.numel(), layout.sigmoid.numel()
    sizes = [n_lin, n_sig, out.shape[-1] - n_lin - n_sig]
    values, flags, soft = out.split(sizes, dim=-1)
    values_t, flags_t, soft_t = target.split(sizes, dim=-1)
    err = (values - values_t) * torch.exp(-log_sigma)
    nll_values = 0.5 * err * err + (log_sigma + 0.5 * math.log(2 * math.pi))
    nll_flags = F.binary_cross_entropy_with_logits(flags, flags_t.expand_as(flags), reduction="none")
    if not layout.soft_spans:
        return nll_values, nll_flags, values.new_zeros(*values.shape[:-1], 0)
    block = soft.reshape(*soft.shape[:-1], *layout.soft_pad.shape) + layout.soft_pad  # (K, n, n_soft, w)
    onehot = soft_t.reshape(soft_t.shape[0], *layout.soft_pad.shape)  # (n, n_soft, w)
    mass = onehot.sum(-1)  # (n, n_soft): 1 for a one-hot, 0 for a span with no level set
    level = onehot.argmax(-1).expand(block.shape[0], -1, -1)[..., None]  # (K, n, n_soft, 1)
    picked = block.gather(-1, level)[..., 0]  # (K, n, n_soft) the observed slot's logit
    lse = _logsumexp_(block)  # without torch's slower generic kernel
    nll_soft = torch.minimum(lse - picked, torch.tensor(1e4)) * mass  # log p floored at -1e4 as in `_packed_nll`
    return nll_values, nll_flags, nll_soft


@torch.no_grad()
def autoencoder_scores(model: Any, x: Tensor) -> RowScores:
    """Reconstruction loss of an `Autoencoder` (its training loss, per row) plus -log density of the row's code."""
    require_fitted(model)
    layout, cfg, module = model.layout_, model.cfg, model.module_
    module.eval()
    device = model.latent_mean_.device

    def one(rows: Tensor) -> RowScores:
        rows = rows.to(device)
        code = module.code(layout.encoder_input(rows, cfg.fold_modes)).float()
        parts = _unpack_parts(layout, _packed_nll(layout, module.decoder(code), layout.pack(rows), None))
        latent = -model.latent_.score_samples((code - model.latent_mean_) / model.latent_std_).double()
        return RowScores(parts.sum(1) + latent.to(parts.device), parts)

    return score_in_chunks(x, one)


# ---------------------------------------------------------------------------------------------------------- arn
@torch.inference_mode()
def arn_scores(model: Any, x: Tensor) -> RowScores:
    """Chain-rule negative log-probability of an `ARN`'s tokens, plus a tail for numbers beyond the training range.

    The network gives each column's token a probability given the tokens before it; a number outside the observed
    range falls in an end bin, so the excess (in the encoder's z-score units) adds excess^2 / 2, a Gaussian tail:
    the model itself would give it probability zero, and an infinite score ranks nothing.

    Activations run column-major, (columns, rows, width), so the prefix sums and the stacked heads read contiguous
    blocks; the sums are the same as `ARNModule.forward`'s.
    """
    from synthgate.models.arn_tokens import to_tokens

    require_fitted(model)
    module = model.module_
    module.eval()
    device = next(module.parameters()).device
    columns, order = model.columns_, model.order_
    weight, bias = _stacked_heads(module.heads)  # every head in one batched matmul
    starts = torch.tensor([columns[o].start for o in order], dtype=torch.long)  # feature each column's part sits on
    offsets = module.offsets[:, None]  # (c, 1) each column's first row in the shared embedding table
    position = module.position.weight[:, None, :]  # (c, 1, embed)
    tails = RangeTails([columns[o] for o in order])
    trunk = inference_steps(module.trunk, device=device)

    def one(rows: Tensor) -> RowScores:
        host = rows.cpu().numpy()
        tokens = torch.from_numpy(to_tokens(host, columns)[:, order].T.copy()).to(device)  # (c, n) in model order
        e = module.embed(tokens + offsets)  # (c, n, embed)
        ctx = torch.empty_like(e)  # context of column j: embeddings of the tokens before it, plus its position
        ctx[0] = 0.0
        for j in range(1, ctx.shape[0]):  # a running sum: torch's cumsum over the leading dimension is 5x slower
            torch.add(ctx[j - 1], e[j - 1], out=ctx[j])
        h = run_steps(trunk, ctx.add_(position))  # (c, n, hidden)
        logits = torch.baddbmm(bias, h, weight)  # (c, n, k_max), padding at a large negative
        picked = logits.gather(-1, tokens[..., None])[..., 0]  # (c, n) the observed token's logit
        lse = _logsumexp_(logits)
        features = torch.zeros(rows.shape[0], rows.shape[1], dtype=torch.float64)
        features.index_add_(1, starts, (lse - picked).T.double().cpu() + tails(host))
        return RowScores(features.sum(1), features)

    return score_in_chunks(x, one, chunk_rows=ARN_CHUNK_ROWS)


def _logsumexp_(logits: Tensor) -> Tensor:
    """logsumexp over the last dimension, overwriting `logits`.

    Differences below `EXP_FLOOR` are floored before `exp`: their terms (under 1e-34 beside the largest one's 1) change
    nothing in float32, and torch's vectorised `exp` takes a path tens of times slower for such inputs (padding).
    """
    top = logits.amax(-1, keepdim=True)
    return logits.sub_(top).clamp_(min=EXP_FLOOR).exp_().sum(-1).log_() + top[..., 0]


def _stacked_heads(heads: Any) -> tuple[Tensor, Tensor]:
    """The per-column output layers as one (c, hidden, k_max) weight and (c, 1, k_max) bias; a column with fewer
    tokens is padded with zero weights and a large negative bias, so its padding gets no probability."""
    k_max = max(h.out_features for h in heads)
    weight = torch.zeros(len(heads), heads[0].in_features, k_max, device=heads[0].weight.device)
    bias = torch.full((len(heads), 1, k_max), -1e9, device=weight.device)
    for j, head in enumerate(heads):
        weight[j, :, : head.out_features] = head.weight.T
        bias[j, 0, : head.out_features] = head.bias
    return weight, bias


def _range_tail(col: Any, host: np.ndarray) -> Tensor:
    """excess^2 / 2 for a number beyond the training range (in the encoder's z-score units), 0 elsewhere: a token
    model puts such a value in an end bin, and would otherwise score it as plausible as that bin's real values."""
    if col.kind != "number" or not col.edges:
        return torch.zeros(host.shape[0], dtype=torch.float64)
    value = torch.from_numpy(host[:, col.start]).double()
    excess = (value - col.edges[-1]).clamp(min=0) + (col.edges[0] - value).clamp(min=0)
    if col.missing_at >= 0:
        excess = torch.where(torch.from_numpy(host[:, col.missing_at]) >= 0.5, 0.0, excess)
    return 0.5 * excess * excess


class RangeTails:
    """`_range_tail` of several token columns at once: (n, c) float64, one vectorised pass over the number columns."""

    def __init__(self, cols: list[Any]):
        self.n_columns = len(cols)
        which = [j for j, c in enumerate(cols) if c.kind == "number" and c.edges]
        self.which = np.asarray(which, dtype=np.int64)
        self.value_at = np.asarray([cols[j].start for j in which], dtype=np.int64)
        self.low = np.asarray([cols[j].edges[0] for j in which], dtype=np.float64)
        self.high = np.asarray([cols[j].edges[-1] for j in which], dtype=np.float64)
        self.flagged = np.asarray([j for j, jj in enumerate(which) if cols[jj].missing_at >= 0], dtype=np.int64)
        self.flag_at = np.asarray([cols[which[j]].missing_at for j in self.flagged], dtype=np.int64)

    def __call__(self, host: np.ndarray) -> Tensor:
        out = np.zeros((host.shape[0], self.n_columns))
        if self.which.size:
            value = host[:, self.value_at].astype(np.float64)
            excess = np.maximum(value - self.high, 0.0) + np.maximum(self.low - value, 0.0)
            if self.flagged.size:
                sub = excess[:, self.flagged]
                sub[host[:, self.flag_at] >= 0.5] = 0.0
                excess[:, self.flagged] = sub
            out[:, self.which] = 0.5 * excess * excess
        return torch.from_numpy(out)


def cart_scores(model: Any, x: Tensor) -> RowScores:
    """Chain-rule negative log-probability of a `CART`'s tokens: each column's token under the smoothed leaf
    distribution its tree routes the row's earlier columns to, plus the arn's tail beyond the training range.

    Leaves are smoothed toward the column's marginal, so no observed token has probability zero and the score is
    finite for any row the tokeniser can read.
    """
    from synthgate.models.arn_tokens import to_tokens

    require_fitted(model)
    columns, order = model.columns_, model.order_

    def one(rows: Tensor) -> RowScores:
        host = rows.cpu().numpy()
        tokens = to_tokens(host, columns)[:, order]
        inputs, _ = model.tree_inputs(tokens)  # tree j reads only the first columns, those before j
        features = torch.zeros(rows.shape[0], rows.shape[1], dtype=torch.float64)
        for j, tree in enumerate(model.trees_):
            col = columns[order[j]]
            leaf = tree.leaves(inputs) if j else np.zeros(len(tokens), dtype=np.int64)
            p = tree.probs[leaf, tokens[:, j]]
            nll = torch.from_numpy(-np.log(np.maximum(p, 1e-300))).double()
            features[:, col.start] += nll + _range_tail(col, host)
        return RowScores(features.sum(1), features)

    return score_in_chunks(x, one)


def marginal_scores(model: Any, x: Tensor) -> RowScores:
    """Negative log-probability of a `MarginalModel`'s row: its coarse tokens under the tree (root marginals and
    parent-to-child conditionals), each fine token within its coarse group, and the arn's tail beyond the range.

    The tree's tables are fitted by IPF from a strictly positive start, so no token has probability zero.
    """
    from synthgate.models.arn_tokens import to_tokens

    require_fitted(model, "tree_")
    domains = model.domains_
    columns = [d.tokens for d in domains]

    def one(rows: Tensor) -> RowScores:
        host = rows.cpu().numpy()
        fine = to_tokens(host, columns)
        coarse = np.stack([d.coarse[fine[:, j]] for j, d in enumerate(domains)], axis=1)
        log_p = model.tree_.log_prob(coarse)
        features = torch.zeros(rows.shape[0], rows.shape[1], dtype=torch.float64)
        for j, d in enumerate(domains):
            group_mass = d.coarse_mass()[d.coarse]
            within = np.log(np.maximum(d.mass[fine[:, j]], 1e-12) / np.maximum(group_mass[fine[:, j]], 1e-12))
            nll = torch.from_numpy(-(log_p[:, j] + np.minimum(within, 0.0))).double()
            features[:, d.tokens.start] += nll + _range_tail(d.tokens, host)
        return RowScores(features.sum(1), features)

    return score_in_chunks(x, one)


# ---------------------------------------------------------------------------------------------------------- gan
def gan_scores(model: Any, x: Tensor) -> RowScores:
    """Minus a `GAN` critic's output per row (weaker than a likelihood; see the module docstring).

    The critic judges packs of `pac` rows with their cond vectors: each row fills a pack on its own, once per
    categorical column with that column's own level as the condition, and the outputs are averaged. A feature's part
    is gradient times input (the critic's first-order change from zeroing the feature), negated like the score.
    """
    require_fitted(model)
    cond_, pac = model.cond_, model.cfg.pac
    device = model.bounded_.device
    model.critic_.eval()

    def one(rows: Tensor) -> RowScores:
        rows = rows.to(device).float().requires_grad_(True)
        n = rows.shape[0]
        if cond_.n_levels:
            offsets = torch.cumsum(torch.tensor([0] + [s.width for s in cond_.spans[:-1]], device=device), 0)
            conds = [
                cond_.one_hot(off + rows[:, s.start : s.stop].argmax(1))
                for off, s in zip(offsets, cond_.spans, strict=True)
            ]
        else:
            conds = [torch.zeros(n, 0, device=device)]
        with torch.enable_grad():
            critic = sum(model.critic_(torch.cat([rows, c], 1).repeat(1, pac)).squeeze(1) for c in conds) / len(
                conds
            )  # (n,)
            (grad,) = torch.autograd.grad(critic.sum(), rows)
        return RowScores(-critic.detach().double(), -(grad * rows).detach().double())

    return score_in_chunks(x, one)
