"""A small character-level GRU language model for one free-text column, conditioned on the rest of the row.

Short free text in business tables (agent notes, ticket subjects, reasons) is narrow: a few templates, a vocabulary of
a few dozen characters, and wording that depends on the row (notes about cancelling on churned customers). A GRU
trained from scratch on the column's own text learns that in seconds on a CPU and needs nothing downloaded.

The row enters through its encoded vector (`TableEncoder` output of the other modelled columns): a linear map of it is
the GRU's initial state and is also added to every step's input, so the text can depend on the row from the first
character to the last. Missing values are a token of their own (`<null>` as the first token), and the end token ends
a text, so the missing share and the length distribution are learned with the words. Typed placeholders (`<EMAIL>`)
are single tokens, so the model places them and the caller fills them with fakes.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from synthgate.models.base import (
    config_from_dict,
    load_checkpoint,
    make_generator,
    require_fitted,
    resolve_device,
    save_checkpoint,
)
from synthgate.schemas.errors import InvalidInputError

PAD, BOS, EOS, NULL, UNK = "<pad>", "<bos>", "<eos>", "<null>", "<unk>"
SPECIALS = (PAD, BOS, EOS, NULL, UNK)


@dataclass(frozen=True)
class TextConfig:
    """Hyperparameters of `TextModel`; the defaults train a few thousand short texts in seconds on a CPU."""

    embed: int = 32
    hidden: int = 64
    max_tokens: int = 256  # texts are cut here for training; longer columns stay Faker text by default
    min_char_count: int = 2  # a character seen once could identify its writer: it becomes <unk>, never sampled
    steps: int = 200  # a fixed number of updates, not epochs: the time does not grow with the rows
    batch_size: int = 32
    lr: float = 1e-2
    temperature: float = 0.8  # a little below 1: fewer misspellings, still varied
    top_p: float = 0.95
    seed: int = 0


class _GRU(nn.Module):
    """Token embedding plus row embedding into a one-layer GRU; the row sets the initial state and each step's input."""

    def __init__(self, n_tokens: int, n_cond: int, config: TextConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_tokens, config.embed)
        self.cond_state = nn.Linear(n_cond, config.hidden)
        self.cond_input = nn.Linear(n_cond, config.embed)
        self.gru = nn.GRU(config.embed, config.hidden, batch_first=True)
        self.head = nn.Linear(config.hidden, n_tokens)

    def initial(self, cond: Tensor) -> Tensor:
        return torch.tanh(self.cond_state(cond)).unsqueeze(0)  # (1, batch, hidden)

    def forward(self, tokens: Tensor, cond: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self.embed(tokens) + self.cond_input(cond).unsqueeze(1)  # (batch, time, embed)
        out, state = self.gru(x, self.initial(cond) if state is None else state)
        return self.head(out), state  # (batch, time, n_tokens)


class TextModel:
    """Character-level conditional language model for one text column (fit on texts, sample texts).

    Attributes:
        vocab_: the tokens, specials first, then placeholders, then characters seen at least `min_char_count` times.
        n_cond_: width of the row vector the model was fitted with.
        null_bias_: shift of the missing token's log-odds that matches the training missing share.
        module_: the trained network.
        history_: training loss per logged step.
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

    # ----------------------------------------------------------------------------------------- tokens
    def _pattern(self) -> re.Pattern[str]:
        alternatives = [re.escape(p) for p in sorted(self.placeholders, key=len, reverse=True)]
        return re.compile("|".join([*alternatives, "."]), re.DOTALL)

    def _tokenize(self, text: str) -> list[str]:
        return self._pattern().findall(text)

    def _encode(self, texts: list[str | None]) -> list[list[int]]:
        index = {t: i for i, t in enumerate(self.vocab_ or [])}
        unk, cut = index[UNK], self.config.max_tokens
        out = []
        for text in texts:
            if text is None:
                out.append([index[NULL]])
                continue
            ids = [index.get(t, unk) for t in self._tokenize(text)]
            out.append(ids[:cut] if len(ids) >= cut else [*ids, index[EOS]])  # a cut text has no end to learn
        return out

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
        device = resolve_device(self.device)
        cond = _conditions(conditions, len(texts)).to(device)
        counts = Counter(t for text in texts if text is not None for t in self._tokenize(text))
        chars = sorted(t for t, c in counts.items() if c >= cfg.min_char_count and t not in self.placeholders)
        self.vocab_ = [*SPECIALS, *self.placeholders, *chars]
        self.n_cond_ = cond.shape[1]
        encoded = self._encode(texts)
        torch.manual_seed(cfg.seed)  # weight initialisation; sampling takes its own generator
        module = _GRU(len(self.vocab_), self.n_cond_, cfg).to(device)
        optimizer = torch.optim.Adam(module.parameters(), lr=cfg.lr)
        order_gen = torch.Generator().manual_seed(cfg.seed)
        self.history_: list[float] = []
        n = len(encoded)
        for step in range(cfg.steps):
            rows = torch.randint(n, (min(cfg.batch_size, n),), generator=order_gen).tolist()
            inputs, targets = _batch([encoded[r] for r in rows], device)
            logits, _ = module(inputs, cond[rows])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            optimizer.step()
            if step % 50 == 0 or step == cfg.steps - 1:
                self.history_.append(float(loss.detach()))
        self.module_ = module.eval()
        self.null_bias_ = self._calibrate_null(cond, sum(t is None for t in texts) / len(texts))
        return self

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
        token = torch.full((n, 1), vocab.index(BOS), dtype=torch.long, device=device)
        state, out = None, torch.zeros((n, 0), dtype=torch.long, device=device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        for step in range(self.config.max_tokens + 1):
            logits, state = self.module_(token, cond, state)
            # The first token decides missing or not: drawn untempered, so the missing share stays the learned one.
            temperature, top_p = (1.0, 1.0) if step == 0 else (max(self.config.temperature, 1e-4), self.config.top_p)
            logits = logits[:, -1] / temperature  # (n, n_tokens)
            logits[:, banned] = -math.inf
            if step == 0:
                logits[:, null_id] += self.null_bias_
            else:
                logits[:, null_id] = -math.inf  # a missing value is decided by the first token only
            token = _top_p(logits, top_p, generator).unsqueeze(1)
            token[done] = eos_id
            out = torch.cat([out, token], dim=1)
            done |= (token.squeeze(1) == eos_id) | (token.squeeze(1) == null_id)
            if bool(done.all()):
                break
        return [self._decode(row) for row in out.tolist()]

    def _decode(self, ids: list[int]) -> str | None:
        vocab = self.vocab_ or []
        if ids and vocab[ids[0]] == NULL:
            return None
        text = []
        for i in ids:
            if vocab[i] == EOS:
                break
            text.append(vocab[i])
        return "".join(text)

    # ------------------------------------------------------------------------------------------- io
    def save(self, directory: Path) -> None:
        require_fitted(self, "n_cond_")
        meta = {
            "vocab": self.vocab_,
            "placeholders": list(self.placeholders),
            "n_cond": self.n_cond_,
            "null_bias": self.null_bias_,
        }
        save_checkpoint(directory, kind="text", config=self.config, state=self.module_.state_dict(), meta=meta)

    @classmethod
    def load(cls, directory: Path, *, device: torch.device | str = "cpu") -> Self:
        config_data, state, meta = load_checkpoint(directory, device=device)
        model = cls(config_from_dict(TextConfig, config_data), placeholders=tuple(meta["placeholders"]), device=device)
        model.vocab_, model.n_cond_ = list(meta["vocab"]), int(meta["n_cond"])
        model.null_bias_ = float(meta["null_bias"])
        module = _GRU(len(model.vocab_), model.n_cond_, model.config).to(torch.device(device))
        module.load_state_dict(state)
        model.module_ = module.eval()
        return model

    def __repr__(self) -> str:
        return f"TextModel({json.dumps(self.config.__dict__)})"


def _conditions(conditions: Tensor | None, n: int) -> Tensor:
    """The row vectors as float (n, d); without any, one zero column so the network's shapes stay the same."""
    if conditions is None:
        return torch.zeros((n, 1))
    if conditions.ndim != 2 or conditions.shape[0] != n:
        raise InvalidInputError(f"conditions must have shape ({n}, n_features), got {tuple(conditions.shape)}")
    return torch.nan_to_num(conditions.float())


def _batch(sequences: list[list[int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """Teacher forcing: inputs start with <bos> and targets are the tokens shifted by one; 0 (<pad>) is ignored."""
    width = max(len(s) for s in sequences)
    inputs = torch.zeros((len(sequences), width), dtype=torch.long)
    targets = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        inputs[i, 0] = SPECIALS.index(BOS)
        inputs[i, 1 : len(seq)] = torch.tensor(seq[:-1], dtype=torch.long)
        targets[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return inputs.to(device), targets.to(device)


def _top_p(logits: Tensor, top_p: float, generator: torch.Generator) -> Tensor:
    """One token per row from the smallest set of tokens whose probability reaches `top_p` (Holtzman et al., 2020)."""
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep = sorted_probs.cumsum(dim=-1) - sorted_probs < top_p  # the token that crosses top_p is kept
    sorted_probs = sorted_probs * keep
    picks = torch.multinomial(sorted_probs / sorted_probs.sum(-1, keepdim=True), 1, generator=generator)
    return order.gather(-1, picks).squeeze(1)
