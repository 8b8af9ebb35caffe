"""A small GRU language model over sentences, words and characters for one free-text column, conditioned on the row.

Short free text in business tables (agent notes, ticket subjects, reasons) is narrow: a few templates, a few hundred
words, and wording that depends on the row (notes about cancelling on churned customers). A GRU trained from scratch
on the column's own text learns that in seconds on a CPU and needs nothing downloaded. Sentences and words that many
texts share are single tokens and rare ones are spelled in characters (`models.text_tokens`), so a template note is a
few recurrent steps, not 90.

The row enters through its encoded vector (`TableEncoder` output of the other modelled columns): a linear map of it is
the GRU's initial state and is also added to every step's input, so the text can depend on the row from the first
token to the last. Missing values are a token of their own (`<null>` as the first token), and the end token ends
a text, so the missing share and the length distribution are learned with the words. Typed placeholders (`<EMAIL>`)
are single tokens, so the model places them and the caller fills them with fakes.

With `epsilon` the fit is DP-SGD (Opacus's GRU for per-text gradients) over a public character vocabulary, and the
missing share and the word list from noisy counts; `privacy_` reports the spend (basic composition of the three).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from synthgate.models.base import (
    config_from_dict,
    load_checkpoint,
    make_generator,
    require_fitted,
    resolve_device,
    save_checkpoint,
)
from synthgate.models.optim import adam
from synthgate.models.text_tokens import BOS, EOS, NULL, PAD, SPECIALS, UNK, Vocabulary
from synthgate.schemas.errors import InvalidInputError

# Early stopping: the validation loss is read every EVAL_EVERY updates on at most MAX_VAL_TEXTS held-out texts, and
# the fit ends after PATIENCE reads without a MIN_GAIN relative improvement (docs/decisions.md#text-columns).
EVAL_EVERY, MAX_VAL_TEXTS, PATIENCE, MIN_GAIN = 10, 256, 1, 0.02
MAX_NULL_SIGMA_SHARE = 0.02  # a noisy missing count wider than 2% of the rows is not used


@dataclass(frozen=True)
class TextConfig:
    """Hyperparameters of `TextModel`; the defaults train a few thousand short texts in seconds on a CPU."""

    embed: int = 32
    hidden: int = 64
    max_tokens: int = 256  # texts are cut here for training; longer columns stay Faker text by default
    min_char_count: int = 2  # a character seen once could identify its writer: it becomes <unk>, never sampled
    min_word_rows: int = 5  # a word used by fewer texts is spelled in characters (models/text_tokens.py)
    max_words: int = 2000
    max_phrases: int = (
        1000  # runs of words that min_word_rows texts share are one token: docs/decisions.md#text-columns
    )
    epochs: int = 20  # the planned passes; early stopping usually ends the fit well before
    min_steps: int = 20
    max_steps: int = 400  # large columns stop here: the time does not grow with the rows past that
    batch_size: int = 32
    lr: float = 2e-2
    temperature: float = 0.8  # a little below 1: fewer misspellings, still varied
    top_p: float = 0.95
    seed: int = 0
    # With epsilon: DP-SGD over public characters and DP-released words (docs/decisions.md#text-dp).
    epsilon: float | None = None
    delta: float | None = None
    dp_epochs: int = 8
    dp_batch_size: int = 256  # large Poisson batches: the noise is spread over more rows
    max_grad_norm: float = 1.0
    null_share: float = 0.05  # of epsilon and delta, for the noisy count of missing texts
    vocab_share: float = 0.15  # of epsilon and delta, for the noisy word counts of the vocabulary


class _GRU(nn.Module):
    """Token embedding plus row embedding into a one-layer GRU; the row sets the initial state and each step's input."""

    def __init__(self, n_tokens: int, n_cond: int, config: TextConfig, *, private: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_tokens, config.embed)
        self.cond_state = nn.Linear(n_cond, config.hidden)
        self.cond_input = nn.Linear(n_cond, config.embed)
        if private:  # Opacus's GRU: same parameters and state dict, per-sample gradients
            from opacus.layers import DPGRU

            self.gru: nn.Module = DPGRU(config.embed, config.hidden, batch_first=True)
        else:
            self.gru = nn.GRU(config.embed, config.hidden, batch_first=True)
        self.head = nn.Linear(config.hidden, n_tokens)

    def initial(self, cond: Tensor) -> Tensor:
        return torch.tanh(self.cond_state(cond)).unsqueeze(0)  # (1, batch, hidden)

    def forward(self, tokens: Tensor, cond: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self.embed(tokens) + self.cond_input(cond).unsqueeze(1)  # (batch, time, embed)
        out, state = self.gru(x, self.initial(cond) if state is None else state)
        return self.head(out), state  # (batch, time, n_tokens)


class TextModel:
    """Word-and-character conditional language model for one text column (fit on texts, sample texts).

    Attributes:
        vocab_: the tokens: specials, placeholders, frequent words, then characters (`models.text_tokens`).
        n_cond_: width of the row vector the model was fitted with.
        null_bias_: shift of the missing token's log-odds that matches the training missing share.
        module_: the trained network.
        history_: validation loss per read (training loss without a validation split; DP-SGD: per step).
        privacy_: with epsilon, what the fit spent (epsilon, delta, noise, steps); None otherwise.
    """

    def __init__(
        self,
        config: TextConfig | None = None,
        *,
        placeholders: tuple[str, ...] = (),
        device: str | torch.device | None = None,
    ) -> None:
        self.config = config or TextConfig()
        self.placeholders = placeholders
        self.device = device
        self.vocab_: list[str] | None = None
        self.n_cond_: int | None = None
        self.privacy_: dict[str, Any] | None = None

    def _vocabulary(self) -> Vocabulary:
        return Vocabulary(tuple(self.vocab_ or ()), self.placeholders)

    # ------------------------------------------------------------------------------------------- fit
    def fit(self, texts: list[str | None], *, conditions: Tensor | None = None) -> Self:
        """Train on `texts` (None for a missing value), each with its row's encoded vector in `conditions`.

        Args:
            texts: one entry per row; None marks a missing value, whose share the model learns.
            conditions: (n_rows, n_features) encoded other columns of the same rows; None trains unconditioned.

        Returns:
            self.
        """
        if not texts:
            raise InvalidInputError("a text model needs at least one row to fit; the text column is empty")
        texts = [t if isinstance(t, str) else None for t in texts]  # NaN and pd.NA are missing values too
        cfg = self.config
        private = cfg.epsilon is not None
        device = resolve_device(self.device)
        cond = _conditions(conditions, len(texts)).to(device)
        present = [t for t in texts if t is not None]
        torch.manual_seed(cfg.seed)  # weight initialisation and DP noise; sampling takes its own generator
        vocab = (
            self._private_vocabulary(present, len(texts))
            if private
            else Vocabulary.learn(
                present,
                placeholders=self.placeholders,
                min_char_count=cfg.min_char_count,
                min_word_rows=cfg.min_word_rows,
                max_words=cfg.max_words,
                max_phrases=cfg.max_phrases,
            )
        )
        self.vocab_ = list(vocab.tokens)
        self.n_cond_ = cond.shape[1]
        encoded = vocab.encode(texts, cfg.max_tokens)
        module = _GRU(len(self.vocab_), self.n_cond_, cfg, private=private).to(device)
        self.history_: list[float] = []
        if private:
            self.module_ = self._fit_private(module, encoded, cond, device)
            share = self._private_null_share(sum(t is None for t in texts), len(texts))
        else:
            self.module_ = self._fit_plain(module, encoded, cond, device)
            share = sum(t is None for t in texts) / len(texts)
        self.module_.eval()
        self.null_bias_ = 0.0 if share is None else self._calibrate_null(cond, share)
        return self

    def _fit_plain(self, module: nn.Module, encoded: list[list[int]], cond: Tensor, device: torch.device) -> nn.Module:
        """Adam on shuffled batches until the validation loss stops falling (between `min_steps` and `max_steps`).

        A column of a few templates is learned in a few dozen updates and a column of varied text needs hundreds;
        stopping on a held-out tenth of the texts gives each what it needs (docs/decisions.md#text-columns).
        """
        cfg = self.config
        order_gen = torch.Generator().manual_seed(cfg.seed)
        perm = torch.randperm(len(encoded), generator=order_gen).tolist()
        n_val = min(len(encoded) // 10, MAX_VAL_TEXTS) if len(encoded) >= 50 else 0
        val, fit = perm[:n_val], perm[n_val:]
        padded = _pad(encoded, device)
        val_batch = _batch(padded, val) if val else None
        batch = max(1, min(cfg.batch_size, len(fit)))
        steps = min(max(math.ceil(cfg.epochs * len(fit) / batch), cfg.min_steps), cfg.max_steps)
        optimizer = adam(module.parameters(), lr=cfg.lr)  # dynamo-free: docs/decisions.md#no-dynamo
        order: list[int] = []
        best, stale = math.inf, 0
        for step in range(steps):
            if len(order) < batch:
                order += [fit[i] for i in torch.randperm(len(fit), generator=order_gen).tolist()]
            rows, order = order[:batch], order[batch:]
            loss = _token_loss(module, _batch(padded, rows), cond[rows])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            optimizer.step()
            if (step + 1) % EVAL_EVERY and step + 1 < steps:
                continue
            if val_batch is None:  # too few texts to hold some out: the planned steps, training loss logged
                self.history_.append(float(loss.detach()))
                continue
            if step + 1 < cfg.min_steps:
                continue
            with torch.no_grad():
                current = float(_token_loss(module, val_batch, cond[val]))
            self.history_.append(current)
            best, stale = (current, 0) if current < best * (1 - MIN_GAIN) else (best, stale + 1)
            if stale >= PATIENCE:
                break
        return module

    def _fit_private(
        self, module: nn.Module, encoded: list[list[int]], cond: Tensor, device: torch.device
    ) -> nn.Module:
        """DP-SGD (`models.privacy.make_private`): Poisson batches, per-text clipped gradients, Gaussian noise.

        Each text's loss is the mean over its own tokens, so one text's gradient is bounded whatever its length,
        and the batch loss is the mean over texts, as Opacus's clipping assumes.
        """
        from synthgate.models.privacy import index_loader, make_private

        cfg = self.config
        n = len(encoded)
        eps, delta = self._budget(n)
        padded = _pad(encoded, device)
        optimizer = torch.optim.Adam(module.parameters(), lr=cfg.lr)
        dp = make_private(
            module,
            optimizer,
            index_loader(n, cfg.dp_batch_size),
            epsilon=eps * (1 - cfg.null_share - cfg.vocab_share),
            delta=delta * (1 - cfg.null_share - cfg.vocab_share),
            epochs=cfg.dp_epochs,
            max_grad_norm=cfg.max_grad_norm,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")  # token ids need no gradient
            for _ in range(cfg.dp_epochs):
                for idx in dp.batches():
                    rows = idx.to(device)
                    inputs, targets = _batch(padded, rows)
                    logits, _ = dp.module(inputs, cond[rows])
                    per_token = F.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=0, reduction="none"
                    ).reshape(targets.shape)  # (batch, time)
                    mask = (targets != 0).float()
                    loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
                    dp.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    dp.optimizer.step()
                    self.history_.append(float(loss.detach()))
        self.privacy_ = dp.report()
        trained = dp.detach()
        plain = _GRU(len(self.vocab_ or []), self.n_cond_ or 1, cfg).to(device)
        wanted = plain.state_dict().keys()  # DPGRU also lists its cells' own names; nn.GRU's are among them
        plain.load_state_dict({k: v for k, v in trained.state_dict().items() if k in wanted})  # the fast GRU samples
        return plain

    def _private_vocabulary(self, present: list[str], n: int) -> Vocabulary:
        """Words released under `vocab_share` of the budget (`Vocabulary.private`); characters are public."""
        cfg = self.config
        eps, delta = self._budget(n)
        return Vocabulary.private(
            present,
            placeholders=self.placeholders,
            epsilon=eps * cfg.vocab_share,
            delta=delta * cfg.vocab_share,
            max_words=cfg.max_words,
        )

    def _budget(self, n: int) -> tuple[float, float]:
        from synthgate.models.privacy import default_delta

        assert self.config.epsilon is not None, "a private fit needs epsilon"
        return float(self.config.epsilon), float(self.config.delta or default_delta(n))

    def _private_null_share(self, n_missing: int, n: int) -> float | None:
        """The missing share from a Gaussian-noised count (sensitivity 1), bought with `null_share` of the budget.

        None when the noise is too wide to help (sigma over `MAX_NULL_SIGMA_SHARE` of the rows): the DP-SGD model's
        own missing chance is kept then. The share is charged either way, so the decision reveals nothing.
        """
        from synthgate.models.privacy import gaussian_sigma

        cfg = self.config
        eps, delta = self._budget(n)
        sigma = gaussian_sigma(eps * cfg.null_share, delta * cfg.null_share)
        noisy = n_missing + float(torch.randn(1).item()) * sigma
        assert self.privacy_ is not None
        self.privacy_ = {
            **self.privacy_,
            "epsilon": round(float(self.privacy_["epsilon"]) + eps * (cfg.null_share + cfg.vocab_share), 4),
            "delta": delta,
            "null_count_sigma": round(sigma, 3),
        }
        return min(max(noisy / n, 0.0), 1.0) if sigma <= MAX_NULL_SIGMA_SHARE * n else None

    @torch.no_grad()
    def _calibrate_null(self, cond: Tensor, share: float) -> float:
        """The shift of the missing token's log-odds that makes the training rows' mean missing chance `share`.

        The missing token is one target per row among dozens of characters, so a short training run leaves its
        chance off; shifting its log-odds keeps how it varies with the row and restores the column's missing share.
        """
        vocab = self.vocab_ or []
        null_id = vocab.index(NULL)
        if share <= 0.0 or share >= 1.0:
            return -math.inf if share <= 0.0 else 50.0  # all missing: a finite shift keeps softmax defined
        start = torch.full((cond.shape[0], 1), vocab.index(BOS), dtype=torch.long, device=cond.device)
        logits = self.module_(start, cond)[0][:, 0]  # (n, n_tokens)
        others = torch.cat([logits[:, :null_id], logits[:, null_id + 1 :]], dim=1).logsumexp(-1)
        log_odds = logits[:, null_id] - others  # (n,)
        lo, hi = -30.0, 30.0
        for _ in range(60):  # bisection: the mean chance grows with the shift
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if float(torch.sigmoid(log_odds + mid).mean()) < share else (lo, mid)
        return (lo + hi) / 2

    # ---------------------------------------------------------------------------------------- sample
    @torch.no_grad()
    def sample(
        self, n: int, *, conditions: Tensor | None = None, generator: torch.Generator | None = None
    ) -> list[str | None]:
        """`n` texts (None for missing), one per row of `conditions`, by temperature and top-p (nucleus) sampling.

        Args:
            n: how many texts.
            conditions: (n, n_features) encoded rows the texts belong to, with the width used in `fit`.
            generator: randomness on the model's device; two calls with one generator draw different texts.
        """
        require_fitted(self, "n_cond_")
        vocab = self.vocab_ or []
        device = next(self.module_.parameters()).device
        cond = _conditions(conditions, n).to(device)
        if cond.shape[1] != self.n_cond_:
            raise InvalidInputError(f"text model was fitted on rows of width {self.n_cond_}, got {cond.shape[1]}")
        generator = generator if generator is not None else make_generator(self.config.seed, device)
        banned = torch.tensor([vocab.index(t) for t in (PAD, BOS, UNK)], device=device)
        null_id, eos_id = vocab.index(NULL), vocab.index(EOS)
        steps = self.config.max_tokens + 1
        out = torch.full((n, steps), eos_id, dtype=torch.long, device=device)  # rows that end keep <eos> after
        # Only the rows still writing go through the network: a row leaves the batch at its <eos> or <null>.
        active = torch.arange(n, device=device)
        token = torch.full((n, 1), vocab.index(BOS), dtype=torch.long, device=device)
        state, used = None, 0
        for step in range(steps):
            used = step + 1
            logits, state = self.module_(token, cond, state)
            # The first token decides missing or not: drawn untempered, so the missing share stays the learned one.
            temperature, top_p = (1.0, 1.0) if step == 0 else (max(self.config.temperature, 1e-4), self.config.top_p)
            logits = logits[:, -1] / temperature  # (rows still writing, n_tokens)
            logits[:, banned] = -math.inf
            if step == 0:
                logits[:, null_id] += self.null_bias_
            else:
                logits[:, null_id] = -math.inf  # a missing value is decided by the first token only
            picked = _top_p(logits, top_p, generator)  # (rows still writing,)
            out[active, step] = picked
            going = (picked != eos_id) & (picked != null_id)
            if not bool(going.any()):
                break
            if not bool(going.all()):
                active, picked, cond, state = active[going], picked[going], cond[going], state[:, going]
            token = picked.unsqueeze(1)
        vocabulary = self._vocabulary()
        return [vocabulary.decode(row) for row in out[:, :used].tolist()]

    # ------------------------------------------------------------------------------------------- io
    def save(self, directory: Path) -> None:
        require_fitted(self, "n_cond_")
        meta = {
            "vocab": self.vocab_,
            "placeholders": list(self.placeholders),
            "n_cond": self.n_cond_,
            "null_bias": self.null_bias_,
            "privacy": self.privacy_,
        }
        save_checkpoint(directory, kind="text", config=self.config, state=self.module_.state_dict(), meta=meta)

    @classmethod
    def load(cls, directory: Path, *, device: torch.device | str = "cpu") -> Self:
        config_data, state, meta = load_checkpoint(directory, device=device)
        model = cls(config_from_dict(TextConfig, config_data), placeholders=tuple(meta["placeholders"]), device=device)
        model.vocab_, model.n_cond_ = list(meta["vocab"]), int(meta["n_cond"])
        model.null_bias_ = float(meta["null_bias"])
        model.privacy_ = meta.get("privacy")
        module = _GRU(len(model.vocab_), model.n_cond_, model.config).to(torch.device(device))
        module.load_state_dict(state)
        model.module_ = module.eval()
        return model

    def __repr__(self) -> str:
        return f"TextModel({json.dumps(self.config.__dict__)})"


def _token_loss(module: _GRU, batch: tuple[Tensor, Tensor], cond: Tensor) -> Tensor:
    """Mean cross-entropy over the batch's real tokens, the GRU run on them only (packed: no step on padding)."""
    inputs, targets = batch
    lengths = (targets != 0).sum(1).cpu()  # (batch,)
    x = module.embed(inputs) + module.cond_input(cond).unsqueeze(1)  # (batch, time, embed)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = module.gru(packed, module.initial(cond))  # the GRU puts the states in the packed order itself
    real = pack_padded_sequence(targets, lengths, batch_first=True, enforce_sorted=False).data  # (tokens,)
    return F.cross_entropy(module.head(out.data), real)


def _conditions(conditions: Tensor | None, n: int) -> Tensor:
    """The row vectors as float (n, d); without any, one zero column so the network's shapes stay the same."""
    if conditions is None:
        return torch.zeros((n, 1))
    if conditions.ndim != 2 or conditions.shape[0] != n:
        raise InvalidInputError(f"conditions must have shape ({n}, n_features), got {tuple(conditions.shape)}")
    return torch.nan_to_num(conditions.float())


def _pad(sequences: list[list[int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """Every sequence in one zero-padded (n, longest) id tensor, once per fit, and their lengths (n,)."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    flat = torch.tensor([i for s in sequences for i in s], dtype=torch.long)
    rows = torch.repeat_interleave(torch.arange(len(sequences)), lengths)
    cols = torch.arange(len(flat)) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
    padded = torch.zeros((len(sequences), int(lengths.max())), dtype=torch.long)
    padded[rows, cols] = flat
    return padded.to(device), lengths.to(device)


def _batch(padded: tuple[Tensor, Tensor], rows: Tensor | list[int]) -> tuple[Tensor, Tensor]:
    """Teacher forcing: inputs start with <bos> and targets are the tokens shifted by one; 0 (<pad>) is ignored."""
    ids, lengths = padded
    rows = torch.as_tensor(rows, dtype=torch.long, device=ids.device)
    targets = ids[rows, : int(lengths[rows].max())]  # (batch, width)
    bos = torch.full((targets.shape[0], 1), SPECIALS.index(BOS), dtype=torch.long, device=ids.device)
    return torch.cat([bos, targets[:, :-1]], dim=1), targets


def _top_p(logits: Tensor, top_p: float, generator: torch.Generator, *, max_rounds: int = 8) -> Tensor:
    """One token per row from the smallest set of tokens whose probability reaches `top_p` (Holtzman et al., 2020).

    A draw from the whole distribution is kept when the tokens more likely than it hold less than `top_p` (it is in
    the nucleus) and redrawn otherwise: that is the nucleus distribution without sorting every row's vocabulary,
    which costs more than the network's step. Rows still outside after `max_rounds` draws take the sorted path.
    """
    probs = torch.softmax(logits, dim=-1)  # (n, n_tokens)
    cdf = probs.cumsum(dim=-1)
    picks = _inverse_cdf(cdf, generator)
    if top_p >= 1.0:
        return picks
    redraw = torch.arange(probs.shape[0], device=probs.device)
    for _ in range(max_rounds):
        rows = probs[redraw]
        chosen = rows.gather(1, picks[redraw].unsqueeze(1))  # (m, 1)
        outside = (rows * (rows > chosen)).sum(dim=-1) >= top_p
        redraw = redraw[outside]
        if not len(redraw):
            return picks
        picks[redraw] = _inverse_cdf(cdf[redraw], generator)
    sorted_probs, order = probs[redraw].sort(dim=-1, descending=True)
    keep = sorted_probs.cumsum(dim=-1) - sorted_probs < top_p  # the token that crosses top_p is kept
    picks[redraw] = order.gather(-1, _inverse_cdf((sorted_probs * keep).cumsum(dim=-1), generator).unsqueeze(1))[:, 0]
    return picks


def _inverse_cdf(cdf: Tensor, generator: torch.Generator) -> Tensor:
    """One index per row of the (unnormalised) cumulative weights `cdf` (torch.multinomial costs more here)."""
    u = torch.rand((cdf.shape[0], 1), generator=generator, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[1] - 1).squeeze(1)
