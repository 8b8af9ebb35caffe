"""`arn`: an autoregressive network over columns, p(row) = prod_j p(column_j | columns before j).

Every column is a token (`models.arn_tokens`: categories as levels, numbers as exact spikes plus quantile bins with a
uniform within-bin value, missing as a token of its own), and one network gives every column's conditional at once:
the context of column j is the sum of the embeddings of the tokens before it (each column has its own embedding
table, so the sum keeps which column said what), plus an embedding of j; a shared MLP turns it into features and a
per-column softmax head into logits. Training is teacher-forced (the real prefix is the input), so one forward pass
scores every column of every row; sampling draws column by column. The idea of column-wise conditionals with
discretised numbers follows TabularARGN (Tiwald et al. 2025, arXiv 2501.12012); the network here is our own.

Against copying: a validation split carved from the training rows stops training when held-out rows stop getting
likelier (memorising rows is what overfitting means here), a bin or spike needs `min_support` rows, heads are
trained with label smoothing and sampled at a `temperature`, and `epsilon` trains with DP-SGD (`models.privacy`).
Conditions come free: fixed columns are forced while sampling, and rows that fixed a column late in the order are
drawn by importance resampling over `condition_pool` candidates, weighted by the model's probability of the forced
tokens given what came before them.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthgate.models import base
from synthgate.models.arn_tokens import ColumnTokens, forced_tokens, from_tokens, tokenise_table
from synthgate.models.encoders.table import Span
from synthgate.models.nn import Dropout
from synthgate.models.optim import adam
from synthgate.models.training import Progress

if TYPE_CHECKING:
    from synthgate.models.scoring import RowScores

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ARNConfig:
    embed_dim: int = 64
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.1
    # SiLU, not GELU: as good a trunk, and its backward is a third of erf-GELU's on CPU, where the activations were a
    # quarter of a training step (docs/decisions.md#arn-speed). Checkpoints saved before it load with "gelu".
    activation: Literal["silu", "gelu"] = "silu"
    epochs: int = 200  # an upper bound: the validation split stops training far earlier on real tables
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-5
    val_fraction: float = 0.1
    patience: int = 6
    max_bins: int = 48
    min_support: int = 10  # rows a bin or a spike needs: fewer and a token could point at one person
    spike_share: float = 0.005  # an exact value held by 0.5% of the rows is a token of its own (heaping)
    label_smoothing: float = 0.0  # spreads a little mass onto every token of a head: rare combinations stay possible
    temperature: float = 1.0  # sampling temperature; above 1 flattens the conditionals
    order: Literal["table", "levels"] = "table"  # docs/decisions.md#arn-column-order
    condition_pool: int = 16  # candidates per row for a condition on a column late in the order
    epsilon: float | None = None  # DP-SGD budget; None trains without it (and with the validation split)
    delta: float | None = None
    max_grad_norm: float = 1.0
    seed: int = 0


class ColumnDropout(Dropout):
    """Dropout with one mask per row, shared by every column position of the row (Gal and Ghahramani's "variational"
    dropout, across columns instead of time steps).

    The trunk sees (n, columns, features); a mask per row and feature regularises as a mask per position does while
    drawing `columns` times fewer random numbers, and drawing them was a fifth of a CPU training step
    (docs/decisions.md#arn-speed). The mask is `models.nn.Dropout`'s cheap CPU draw; no parameters.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.threshold == 0:
            return x
        return x * self.mask((x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1]), x.device)


class ARNModule(nn.Module):
    """Embeddings, a shared trunk and one head per column; plain Linear/Embedding/LayerNorm, so Opacus can wrap it."""

    def __init__(self, n_tokens: list[int], cfg: ARNConfig):
        super().__init__()
        offsets = np.r_[0, np.cumsum(n_tokens)[:-1]]
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.long), persistent=False)
        self.embed = nn.Embedding(int(sum(n_tokens)), cfg.embed_dim)
        self.position = nn.Embedding(len(n_tokens), cfg.embed_dim)
        blocks: list[nn.Module] = [nn.LayerNorm(cfg.embed_dim)]
        width = cfg.embed_dim
        for _ in range(cfg.layers):
            act = nn.SiLU() if cfg.activation == "silu" else nn.GELU()
            blocks += [nn.Linear(width, cfg.hidden), act, ColumnDropout(cfg.dropout)]
            width = cfg.hidden
        self.trunk = nn.Sequential(*blocks)
        self.heads = nn.ModuleList(nn.Linear(cfg.hidden, k) for k in n_tokens)

    def contexts(self, tokens: Tensor) -> Tensor:
        """(n, c) tokens -> (n, c, embed) context of each column: embeddings of the tokens before it, plus its position."""
        e = self.embed(tokens + self.offsets)  # (n, c, embed)
        prefix = torch.cumsum(e, dim=1) - e  # sum over columns before j
        # Positions looked up per row, not read off `.weight`: Opacus needs the batch dimension for per-row gradients.
        positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
        return prefix + self.position(positions)

    def forward(self, tokens: Tensor) -> list[Tensor]:
        """Teacher-forced logits of every column: a list of (n, k_j). Opacus's path (it needs each head's call)."""
        h = self.trunk(self.contexts(tokens))  # (n, c, hidden)
        return [head(h[:, j]) for j, head in enumerate(self.heads)]

    def stacked_logits(self, tokens: Tensor) -> Tensor:
        """The same logits as `forward`, as one (c, n, k_max) tensor from one batched matmul over the heads.

        A column with fewer tokens gets a large negative logit on its padding, so its softmax is its own. Taking a
        column's slice of the trunk's output per head made backward zero-fill and add a full (n, c, hidden) gradient
        per column; this path writes it once.
        """
        h = self.trunk(self.contexts(tokens)).transpose(0, 1)  # (c, n, hidden)
        k_max = max(head.out_features for head in self.heads)
        weight = torch.stack([F.pad(head.weight, (0, 0, 0, k_max - head.out_features)) for head in self.heads])
        bias = torch.stack([F.pad(head.bias, (0, k_max - head.out_features), value=-1e9) for head in self.heads])
        return torch.baddbmm(bias[:, None, :], h, weight.transpose(1, 2))


class ARN:
    """Autoregressive network over columns; see the module docstring.

    Attributes:
        columns_: the `ColumnTokens` of each column, in table order.
        order_: the column order the conditionals follow (indices into `columns_`).
        module_: the fitted network (its columns in `order_`).
        n_features_in_: width of the encoded rows.
        history_: per-epoch train and validation losses, best epoch, seconds.
        privacy_: the DP-SGD report when `epsilon` was given.
    """

    config_class: ClassVar[type] = ARNConfig
    supports_conditions: ClassVar[bool] = True
    normalization: ClassVar[str] = "standard"

    def __init__(self, config: ARNConfig | None = None, *, spans: list[Span] | None = None, device=None):
        self.config = config
        self.spans = spans
        self.device = device
        self.columns_: list[ColumnTokens] | None = None
        self.order_: list[int] | None = None
        self.module_: ARNModule | None = None
        self.n_features_in_: int | None = None
        self.history_: dict | None = None
        self.privacy_: dict | None = None

    # ------------------------------------------------------------------------------------------------------ fit
    def fit(
        self, x: Tensor, *, conditions: Tensor | None = None, progress: Callable[[dict], None] | None = None
    ) -> Self:
        """Learn the tokens and train the network on encoded rows `x` (n, n_features)."""
        cfg = self.config or ARNConfig()
        x = base.check_matrix(x)
        device = base.resolve_device(self.device)
        columns, order, tokens = tokenise_table(
            x.cpu().numpy(), self.spans, max_bins=cfg.max_bins, min_support=cfg.min_support,
            spike_share=cfg.spike_share, order=cfg.order,
        )  # fmt: skip
        self.columns_, self.order_, self.n_features_in_ = columns, order, x.shape[1]
        torch.manual_seed(cfg.seed)
        self.module_ = ARNModule([columns[j].n_tokens for j in order], cfg).to(device)
        self._train(base.to_device(torch.from_numpy(tokens), device, torch.long), cfg, device, progress)
        return self

    def _train(self, tokens: Tensor, cfg: ARNConfig, device: torch.device, progress) -> None:
        gen = base.make_generator(cfg.seed, "cpu")
        n = tokens.shape[0]
        private = cfg.epsilon is not None
        n_val = 0 if private or n < 50 else max(1, int(n * cfg.val_fraction))
        perm = torch.randperm(n, generator=gen).to(device)
        val, train = tokens[perm[:n_val]], tokens[perm[n_val:]]
        opt = adam(self.module_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, private=private)
        module: nn.Module = self.module_
        dp = None
        if private:
            from synthgate.models.privacy import default_delta, index_loader, make_private

            dp = make_private(
                self.module_,
                opt,
                index_loader(train.shape[0], cfg.batch_size),
                epsilon=cfg.epsilon,
                delta=cfg.delta or default_delta(train.shape[0]),
                epochs=cfg.epochs,
                max_grad_norm=cfg.max_grad_norm,
            )
            module, opt = dp.module, dp.optimizer
        best, best_state, bad, losses = math.inf, None, 0, []
        start = time.perf_counter()
        for epoch in range(cfg.epochs):
            module.train()
            batches = (
                dp.batches()
                if dp
                else torch.randperm(train.shape[0], generator=gen).to(device).split(max(1, cfg.batch_size))
            )
            total, seen = 0.0, 0
            for idx in batches:
                idx = idx.to(device)
                loss = self._batch_loss(module, train[idx], cfg.label_smoothing, private)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, seen = total + loss.item() * idx.numel(), seen + idx.numel()
            val_loss = self._val_loss(val) if n_val else total / max(seen, 1)
            losses.append((total / max(seen, 1), val_loss))
            if progress:
                elapsed = time.perf_counter() - start
                # Early stopping usually ends the fit within `patience` epochs of the best; the ETA assumes that.
                left = min(cfg.epochs - epoch - 1, cfg.patience - bad if n_val else cfg.epochs - epoch - 1)
                progress(
                    Progress(
                        epoch=epoch + 1,
                        n_epochs=cfg.epochs,
                        loss=total / max(seen, 1),
                        val_loss=val_loss if n_val else None,
                        rows_per_s=(epoch + 1) * train.shape[0] / max(elapsed, 1e-9),
                        eta_s=elapsed / (epoch + 1) * max(left, 0),
                    )
                )
            if val_loss < best - 1e-4:
                best, bad = val_loss, 0
                best_state = copy.deepcopy(self.module_.state_dict()) if n_val else None
            else:
                bad += 1
                if n_val and bad >= cfg.patience:
                    break
        if best_state is not None:
            self.module_.load_state_dict(best_state)
        if dp:
            self.module_ = dp.detach()
            self.privacy_ = dp.report()
        self.module_.eval()
        best_epoch = int(np.argmin([v for _, v in losses])) + 1 if losses else 0
        self.history_ = {
            "epochs_run": len(losses),
            "best_epoch": best_epoch,
            "fit_seconds": time.perf_counter() - start,
        }
        logger.info("arn: %d epochs (best %d), val loss %.4f", len(losses), best_epoch, best)

    def _batch_loss(self, module: nn.Module, tokens: Tensor, smoothing: float, private: bool) -> Tensor:
        """The training loss of a batch: through each head under DP-SGD (Opacus needs the calls), stacked otherwise."""
        if private:
            return self._loss(module(tokens), tokens, smoothing)
        return self._stacked_loss(self.module_.stacked_logits(tokens), tokens, smoothing)

    @staticmethod
    def _loss(logits: list[Tensor], tokens: Tensor, smoothing: float) -> Tensor:
        """Negative log-likelihood per row, summed over columns (mean over rows)."""
        return sum(F.cross_entropy(lg, tokens[:, j], label_smoothing=smoothing) for j, lg in enumerate(logits))

    def _stacked_loss(self, logits: Tensor, tokens: Tensor, smoothing: float) -> Tensor:
        """`_loss` of (c, n, k_max) stacked logits: label smoothing spreads over each column's own tokens only."""
        log_p = torch.log_softmax(logits, dim=-1)
        nll = -log_p.gather(-1, tokens.T[..., None])[..., 0]  # (c, n)
        if smoothing:
            sizes = torch.tensor([h.out_features for h in self.module_.heads], device=logits.device)
            own = torch.arange(logits.shape[-1], device=logits.device) < sizes[:, None]  # (c, k_max)
            uniform = -(log_p * own[:, None, :]).sum(-1) / sizes[:, None]
            nll = (1.0 - smoothing) * nll + smoothing * uniform
        return nll.mean(1).sum()

    @torch.no_grad()
    def _val_loss(self, val: Tensor) -> float:
        self.module_.eval()
        return float(self._stacked_loss(self.module_.stacked_logits(val), val, 0.0))

    # ------------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, *, conditions: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw `n` encoded rows; `conditions` ((n_features,) or (n, n_features), NaN = free) fix columns exactly."""
        base.require_fitted(self)
        cfg = self.config or ARNConfig()
        device = next(self.module_.parameters()).device
        gen = generator if generator is not None else base.make_generator(None, device)
        forced = self._forced_tokens(conditions, n, device)  # (n, c) in model order, -1 = free; or None
        pool = 1
        if forced is not None:
            fixed = (forced >= 0).any(0).nonzero().flatten()
            late = fixed.numel() and bool((fixed.max() + 1 > fixed.numel()) or (forced[:, fixed] < 0).any())
            pool = cfg.condition_pool if late else 1
            forced = forced.repeat_interleave(pool, dim=0)
        tokens, log_w = self._draw(n * pool, forced, cfg.temperature, gen, device)
        if pool > 1:  # importance resampling: one candidate per row, in proportion to p(forced tokens | prefix)
            w = torch.softmax(log_w.view(n, pool), dim=1)
            pick = torch.multinomial(w, 1, generator=gen).flatten()
            tokens = tokens.view(n, pool, -1)[torch.arange(n, device=device), pick]
        table = torch.empty_like(tokens)
        table[:, self.order_] = tokens  # back to table order
        out = from_tokens(table, self.columns_, self.n_features_in_, gen)
        if conditions is not None:  # numbers fixed by value come back as given, not as their bin's draw
            cond = torch.as_tensor(conditions, dtype=torch.float32, device=device).expand(n, -1)
            out = torch.where(torch.isnan(cond), out, cond)
        return out

    def _draw(self, n: int, forced: Tensor | None, temperature: float, gen, device) -> tuple[Tensor, Tensor]:
        m = self.module_
        c = len(self.order_)
        tokens = torch.zeros(n, c, dtype=torch.long, device=device)
        log_w = torch.zeros(n, device=device)
        prefix = torch.zeros(n, m.embed.embedding_dim, device=device)
        for j in range(c):
            h = m.trunk(prefix + m.position.weight[j])  # (n, hidden); the same value as the per-row lookup
            logp = torch.log_softmax(m.heads[j](h) / temperature, dim=1)  # (n, k_j)
            tok = torch.multinomial(logp.exp(), 1, generator=gen).flatten()
            if forced is not None:
                fix = forced[:, j] >= 0
                tok = torch.where(fix, forced[:, j], tok)
                log_w = log_w + torch.where(fix, logp.gather(1, tok[:, None]).flatten(), torch.zeros_like(log_w))
            tokens[:, j] = tok
            prefix = prefix + m.embed(tok + m.offsets[j])
        return tokens, log_w

    def _forced_tokens(self, conditions: Tensor | None, n: int, device) -> Tensor | None:
        forced = forced_tokens(conditions, n, self.n_features_in_, self.columns_, self.order_)
        return None if forced is None else torch.from_numpy(forced).to(device)

    # ---------------------------------------------------------------------------------------------- persistence
    def anomaly_scores(self, x: Tensor) -> RowScores:
        """Per-row chain-rule negative log-probability and per-feature parts (`models.scoring`)."""
        from synthgate.models.scoring import arn_scores

        return arn_scores(self, x)

    def save(self, directory: Path) -> None:
        base.require_fitted(self)
        meta = {
            "n_features_in": self.n_features_in_,
            "columns": [asdict(c) for c in self.columns_],
            "order": self.order_,
            "history": self.history_,
            "privacy": self.privacy_,
        }
        state = {k: v for k, v in self.module_.state_dict().items()}
        base.save_checkpoint(directory, kind="arn", config=self.config or ARNConfig(), state=state, meta=meta)

    @classmethod
    def load(cls, directory: Path, *, device: torch.device | str = "cpu") -> Self:
        config, state, meta = base.load_checkpoint(directory, device=device)
        cfg = base.config_from_dict(ARNConfig, {"activation": "gelu", **config})
        model = cls(cfg, device=device)
        model.columns_ = [ColumnTokens(**c) for c in meta["columns"]]
        model.order_ = list(meta["order"])
        model.n_features_in_ = int(meta["n_features_in"])
        model.history_, model.privacy_ = meta.get("history"), meta.get("privacy")
        model.module_ = ARNModule([model.columns_[j].n_tokens for j in model.order_], cfg).to(
            base.resolve_device(device)
        )
        model.module_.load_state_dict(state)
        model.module_.eval()
        return model
