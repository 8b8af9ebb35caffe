"""`GAN`: a conditional Wasserstein GAN for encoded tables, in the spirit of CTGAN (Xu et al. 2019).

What makes a GAN work on tables, all from CTGAN:
- a conditional vector: one categorical column is picked per row and one of its levels fixed; the generator is fed
  that one-hot and penalised (cross-entropy) when its output for that column disagrees;
- training-by-sampling: the level is drawn with probability proportional to log(1 + frequency), and a real row with
  that level is picked for the critic, so rare categories are seen often enough to be learnt;
- Gumbel-softmax outputs for one-hot groups (Jang et al. 2017), so gradients pass through discrete columns;
- PacGAN packing (Lin et al. 2018): the critic judges `pac` rows at once, which discourages mode collapse;
- the WGAN-GP loss (Gulrajani et al. 2017): a critic with a gradient penalty instead of weight clipping.

Departures from CTGAN: the generator's loss also matches the batch's feature means and covariances to the real
batch's (`models.moments`; off under DP-SGD), which teaches it the columns' correlations in tens of steps;
training-by-sampling vectorised on the device (one gather per batch,
no per-row numpy); draws at sampling time that come from the caller's generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthgate.models.base import make_generator, require_fitted
from synthgate.models.conditioner import Conditioner
from synthgate.models.gan_backprop import GANGradients
from synthgate.models.layout import packed_decoder_state
from synthgate.models.moments import moment_matching_loss, moment_projection
from synthgate.models.nn import MLP, ResidualGenerator, as_conditions, normal, uniform
from synthgate.models.optim import WeightAverage
from synthgate.models.table_model import PrivateDefaults, TableModel
from synthgate.models.training import autocast
from synthgate.schemas.errors import InvalidInputError

if TYPE_CHECKING:
    from synthgate.models.scoring import RowScores


@dataclass(frozen=True)
class GANConfig(PrivateDefaults):
    noise_dim: int = 64  # small networks and averaged weights: docs/decisions.md#gan-small-networks
    generator_hidden: tuple[int, ...] = (128,)
    critic_hidden: tuple[int, ...] = (64,)
    # "residual": CTGAN's BatchNorm blocks (docs/decisions.md#gan-residual-generator); "mlp": a LayerNorm MLP.
    generator: str = "residual"
    epochs: int = 300
    batch_size: int = 1000  # a multiple of pac; twice CTGAN's: docs/decisions.md#gan-batch-size
    pac: int = 5  # rows the critic judges together (PacGAN), half CTGAN's: docs/decisions.md#gan-pac
    lr: float = 4e-3  # the generator's; fast with moment matching: docs/decisions.md#gan-learning-rates
    critic_lr: float | None = 2e-3  # the critic's own rate (two time-scale rule); None: `lr`
    # Weight of the feature mean and covariance matching in the generator's loss (`models.moments`); 0 turns it off,
    # and DP-SGD does: docs/decisions.md#gan-moment-matching.
    moment_weight: float = 1.0
    betas: tuple[float, float] = (0.5, 0.9)  # WGAN-GP's Adam settings (Gulrajani et al. 2017, Algorithm 1)
    weight_decay: float = 1e-6
    critic_steps: int = 1  # critic updates per generator update; CTGAN uses 1 despite WGAN-GP's 5
    gp_weight: float = 10.0  # lambda of the gradient penalty
    # The penalty on every k-th critic step, weighted by k (StyleGAN2's lazy regularisation), and the generator step
    # reusing the critic step's fake rows: docs/decisions.md#gan-lazy-penalty.
    gp_every: int = 4
    reuse_fake: bool = True
    tau: float = 0.2  # Gumbel-softmax temperature during training
    # Samples come from a moving average of the generator's weights over this share of its steps (0: the last
    # weights): docs/decisions.md#gan-weight-average.
    ema_share: float = 0.1
    critic_dropout: float = 0.0  # CTGAN's 0.5 scored lower: docs/decisions.md#gan-small-networks
    seed: int = 0  # seeds weight init, conditional draws and noise during fit; sampling uses the caller's generator
    # Differential privacy (DP-SGD, models/privacy.py); epsilon None trains without it. Only the critic sees real rows
    # and is made private; the conditional vector and training-by-sampling are off (their level counts are private).
    epsilon: float | None = None
    delta: float | None = None  # None: 1 / (10 n), see models.privacy.default_delta
    max_grad_norm: float = 1.0  # per-sample clipping bound C
    # With epsilon the gradient penalty (a double backward Opacus cannot clip) is replaced: "wasserstein" clamps the
    # critic's weights to [-weight_clip, weight_clip] (DPGAN, Xie et al. 2018); "logistic" is the non-saturating GAN
    # loss (Goodfellow et al. 2014), which needs no Lipschitz critic.
    private_loss: str = "wasserstein"
    weight_clip: float = 0.01
    # Generator updates per critic update. Under DP-SGD they are free (the generator reads only the private critic),
    # so more of them get more from each noisy critic step: docs/decisions.md#dp-sgd-options.
    generator_steps: int = 1
    noise_decay: float = 1.0  # DP-SGD noise schedule, last epoch's multiplier over the first's (1: constant)
    hand_backprop: bool = True  # CPU steps with the hand-written gradients (`models.backprop`); False: autograd

    # Used instead of the defaults when `epsilon` is set (`PrivateDefaults`): docs/decisions.md#dp-defaults.
    PRIVATE: ClassVar[dict[str, Any]] = {
        "batch_size": 2000,
        "epochs": 30,
        "lr": 5e-4,
        "critic_hidden": (128, 128),
        "pac": 1,
        "private_loss": "logistic",
    }


# With DP the conditional vector is off: a layout with no categorical spans gives a Conditioner with zero levels.
_NO_CATEGORIES = SimpleNamespace(spans=[], soft_spans=[])


class GAN(GANGradients, TableModel):
    """Conditional WGAN-GP over the `TableEncoder` layout (CTGAN-style).

    Args:
        config: hyperparameters; `GANConfig()` when omitted.
        spans: the encoder's spans; categorical spans (role "category") get the conditional vector.
        device: "auto"/None for CUDA when present, else CPU.

    Attributes:
        generator_, critic_: the trained networks.
        history_: the training `History` (mean critic + generator loss per epoch; no validation loss).
        n_features_in_: width of the encoded rows seen in `fit`.
    """

    kind: ClassVar[str] = "gan"
    config_class: ClassVar[type] = GANConfig
    supports_conditions: ClassVar[bool] = True  # natively on categorical spans through the conditional vector
    # Modes merged while BIC falls, because the gan draws each column's mode on its own:
    # docs/decisions.md#normalization-per-model.
    normalization: ClassVar[str] = "mode_bic"

    # -------------------------------------------------------------------------------------------------- fitting
    def _build(self, n_features: int, device: torch.device) -> None:
        cfg = self.cfg
        self.cond_ = Conditioner(_NO_CATEGORIES if self.private else self.layout_, device)
        c = self.cond_.n_levels
        if cfg.generator not in ("residual", "mlp"):
            raise InvalidInputError(f"generator must be 'residual' or 'mlp', got {cfg.generator!r}")
        make = ResidualGenerator if cfg.generator == "residual" else MLP
        # The generator emits the layout's packed order (`SpanLayout.activate`): no gathers in its activations.
        self.generator_ = make(cfg.noise_dim + c, tuple(cfg.generator_hidden), self.layout_.packed_width).to(device)
        self.critic_ = MLP(
            cfg.pac * (n_features + c),
            tuple(cfg.critic_hidden),
            1,
            activation=nn.LeakyReLU,
            norm=False,  # WGAN-GP's penalty is per sample: no normalisation across the batch in the critic
            dropout=cfg.critic_dropout,
            narrow=not self.private,  # Opacus computes per-sample gradients for plain nn.Linear only
        ).to(device)
        # Value features with a mode one-hot are offsets in about [-1, 1]: tanh there, as CTGAN; plain z-scores stay
        # linear. (n_linear,) bool over the layout's value features.
        moded = {s.column for s in self.layout_.spans if s.role == "mode"}
        bounded = torch.zeros(n_features, dtype=torch.bool)
        for s in self.layout_.spans:
            if s.role == "value" and s.column in moded:
                bounded[s.start : s.stop] = True
        self.bounded_ = bounded.to(device)[self.layout_.linear]
        self.n_features_in_ = n_features

    def _generate(self, noise: Tensor, cond: Tensor, *, tau: float | None) -> tuple[Tensor, Tensor]:
        """Raw packed logits (b, packed_width) and activated rows (b, d) in feature order for noise (b, noise_dim)
        and cond vectors (b, n_levels)."""
        logits = self.generator_(torch.cat([noise, cond], 1))  # (b, packed_width)
        return logits, self.layout_.activate(logits, tau=tau, squash=self.bounded_)

    def _packs(self, rows: Tensor, cond: Tensor) -> Tensor:
        """The critic's input: rows (b, d) with their cond vectors (b, c), `pac` rows a pack, (b / pac, pac * (d + c))."""
        pac = self.cfg.pac
        return torch.cat([rows, cond], 1).reshape(rows.shape[0] // pac, -1)

    def _critic(self, rows: Tensor, cond: Tensor, net: nn.Module | None = None) -> Tensor:
        return (net or self.critic_)(self._packs(rows, cond))  # (b / pac, 1)

    def _gradient_penalty(self, real: Tensor, fake: Tensor, cond: Tensor) -> Tensor:
        """lambda * (||grad D(x_hat)|| - 1)^2 on random interpolates of packed rows (Gulrajani et al. 2017, eq. 3)."""
        cfg = self.cfg
        alpha = torch.rand(real.shape[0] // cfg.pac, 1, 1, device=real.device)  # one mix per pack
        alpha = alpha.expand(-1, cfg.pac, 1).reshape(-1, 1)  # (b, 1)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self._critic(mixed, cond).sum(), mixed, create_graph=True)
        norms = grad.reshape(real.shape[0] // cfg.pac, -1).norm(2, dim=1)  # per pack
        return cfg.gp_weight * (norms - 1).pow(2).mean()

    def _check_rows(self, x: Tensor) -> None:
        cfg = self.cfg
        min_rows = max(cfg.pac, 2)  # a PacGAN pack, and two rows a batch for the generator's BatchNorm
        if x.shape[0] < min_rows:
            raise InvalidInputError(f"the gan needs at least max(pac, 2)={min_rows} rows, got {x.shape[0]}")
        if cfg.batch_size % cfg.pac:
            raise InvalidInputError(f"batch_size ({cfg.batch_size}) must be a multiple of pac ({cfg.pac})")
        if cfg.epsilon is not None and cfg.critic_steps != 1:
            # The critic steps share one Poisson batch, and the accountant charges each as a fresh sample.
            raise InvalidInputError(f"critic_steps must be 1 under DP-SGD (epsilon), got {cfg.critic_steps}")
        if cfg.private_loss not in ("wasserstein", "logistic"):
            raise InvalidInputError(f"private_loss must be 'wasserstein' or 'logistic', got {cfg.private_loss!r}")

    def _fit(self, x: Tensor, gen: torch.Generator, progress: Any) -> None:
        """Train on encoded rows `x` (n, n_features)."""
        cfg, device = self.cfg, self.device_
        min_rows = max(cfg.pac, 2)
        self.cond_.fit_counts(x)
        opt_g = self._optimizer(
            self.generator_.parameters(), lr=cfg.lr, private=False, betas=tuple(cfg.betas),
            weight_decay=cfg.weight_decay,
        )  # fmt: skip
        opt_d = self._optimizer(
            self.critic_.parameters(),
            lr=cfg.lr if cfg.critic_lr is None else cfg.critic_lr,
            betas=tuple(cfg.betas),
            weight_decay=cfg.weight_decay,
        )
        has_cond = self.cond_.n_levels > 0
        critic, dp = self.critic_, None
        if self.private:  # DP-SGD hook (models/privacy.py): the critic alone touches real rows
            dp = self._make_private(self.critic_, opt_d, x.shape[0])
            opt_d, critic = dp.optimizer, dp.module
            # A row is in exactly one pack and gradients are clipped per pack: average over packs, not rows.
            opt_d.expected_batch_size = max(1, opt_d.expected_batch_size // cfg.pac)

        def draw(batch: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
            """Real rows, cond vectors and levels for a batch of row indices (b,) into `x`, or None for all rows
            (then the rows are shuffled here, so that a pack's last rows are not always the same)."""
            if batch is None and not has_cond:
                batch = torch.randperm(x.shape[0], generator=gen, device=gen.device).to(device)
            b = (x.shape[0] if batch is None else batch.shape[0]) // cfg.pac * cfg.pac
            if not has_cond:
                return x.index_select(0, batch[:b]), torch.zeros(b, 0, device=device), None
            level, rows = self.cond_.draw_training(b)
            return x.index_select(0, rows), self.cond_.one_hot(level), level

        batch_size = max(cfg.pac, min(cfg.batch_size, x.shape[0] - x.shape[0] % cfg.pac))
        # Samples come from averaged generator weights over the last `ema_share` of the generator steps.
        steps = cfg.epochs * max(1, x.shape[0] // batch_size) * cfg.generator_steps
        average = WeightAverage(self.generator_, cfg.ema_share * steps) if cfg.ema_share > 0 else None
        critic_updates = [0]
        # The penalty's gradients in closed form for the default one-hidden-layer critic (`_penalty_by_hand`).
        closed_form = len(tuple(cfg.critic_hidden)) == 1
        logistic = dp is not None and cfg.private_loss == "logistic"
        matching = cfg.moment_weight > 0 and dp is None  # real rows reach the generator only without DP-SGD

        # Gradients by hand on CPU (`models.backprop`) for the default networks; autograd under DP-SGD, for
        # other critics and on CUDA (autocast).
        by_hand = (
            cfg.reuse_fake
            and cfg.generator_steps == 1
            and closed_form
            and self._hand_backprop(device, self.generator_, self.critic_)
        )

        def step_by_hand(batch: Tensor | None) -> Tensor:
            """`step` with hand-written gradients: the same draws in the same order, the same updates."""
            for _ in range(cfg.critic_steps):
                real, cond, level = draw(batch)
                noise = torch.randn(real.shape[0], cfg.noise_dim, device=device)
                logits, fake, saved = self._generate_by_hand(noise, cond)
                penalty = critic_updates[0] % cfg.gp_every == 0
                loss_d = self._critic_loss_and_gradients(real, fake, cond, penalty=penalty)
                critic_updates[0] += 1
                opt_d.step()
            loss_g = self._generator_loss_and_gradients(logits, fake, cond, level, saved, real if matching else None)
            opt_g.step()
            if average is not None:
                average.update()
            return loss_d + loss_g

        def step(batch: Tensor | None) -> Tensor:
            # Critic: maximise D(real) - D(fake) under the gradient penalty (WGAN-GP, Gulrajani et al. 2017).
            for _ in range(cfg.critic_steps):
                real, cond, level = draw(batch)
                with autocast(device):
                    logits, fake = self._generate(
                        torch.randn(real.shape[0], cfg.noise_dim, device=device), cond, tau=cfg.tau
                    )
                    if dp is None:
                        # Fake and real packs in one forward: one weight-gradient matmul in the backward instead
                        # of two thin ones and their sum.
                        scores = self._critic(torch.cat([fake.detach(), real]), torch.cat([cond, cond]), critic)
                        score_fake, score_real = scores.chunk(2)
                    else:  # Opacus clips per sample: only real packs may be samples of the private batch
                        score_fake = self._critic(fake.detach(), cond, critic)
                        score_real = self._critic(real, cond, critic)
                    if logistic:  # -log(1 - sigmoid(D(fake))) - log(sigmoid(D(real)))
                        loss_d = F.softplus(score_fake).mean() + F.softplus(-score_real).mean()
                    else:
                        loss_d = score_fake.mean() - score_real.mean()
                    penalty_grads = None
                    if dp is None and critic_updates[0] % cfg.gp_every == 0:
                        if closed_form:
                            penalty, penalty_grads = self._penalty_by_hand(real, fake.detach(), cond, cfg.gp_every)
                            loss_d = loss_d + penalty
                        else:
                            penalty = self._gradient_penalty(real, fake.detach(), cond)
                            loss_d = loss_d + cfg.gp_every * penalty
                critic_updates[0] += 1
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                for param, grad in penalty_grads or ():
                    param.grad.add_(grad)
                opt_d.step()
                if dp is not None and not logistic:
                    with torch.no_grad():
                        for p in self.critic_.parameters():
                            p.clamp_(-cfg.weight_clip, cfg.weight_clip)
            # Generator: fool the critic and honour the conditional vector (Xu et al. 2019, sec. 4.3).
            if dp is not None:
                dp.module.disable_hooks()  # the generator step needs no per-sample critic gradients
            else:  # nor any critic weight gradients: its backward computes the input gradient only
                self.critic_.requires_grad_(False)
            for g_step in range(cfg.generator_steps):
                with autocast(device):
                    if g_step or not cfg.reuse_fake:
                        real, cond, level = draw(batch)
                        logits, fake = self._generate(
                            torch.randn(real.shape[0], cfg.noise_dim, device=device), cond, tau=cfg.tau
                        )
                    critic_fake = self._critic(fake, cond)
                    loss_g = F.softplus(-critic_fake).mean() if logistic else -critic_fake.mean()
                    if level is not None:
                        loss_g = loss_g + self.cond_.condition_loss(logits, level, self.layout_)
                    if matching:
                        projection = moment_projection(fake.shape[1], device)
                        loss_g = loss_g + cfg.moment_weight * moment_matching_loss(fake, real, projection)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                if average is not None:
                    average.update()
            if dp is not None:
                dp.module.enable_hooks()
            else:
                self.critic_.requires_grad_(True)
            return loss_d.detach() + loss_g.detach()

        self._train(
            step_by_hand if by_hand else step,
            x,
            modules={"generator": self.generator_, "critic": self.critic_},
            batch_size=batch_size,
            generator=gen,
            progress=progress,
            drop_last=True,
            privacy=dp,
            min_private_rows=min_rows,
            indices=True,  # `draw` picks the real rows (by level with the conditional vector)
        )
        if dp is not None:
            self.critic_ = dp.detach()
            self.privacy_ = dp.report()
        if average is not None:
            average.apply()
            self._recalibrate_norms(cfg.batch_size * 4, device)

    @torch.no_grad()
    def _recalibrate_norms(self, n: int, device: torch.device) -> None:
        """Recompute the generator's BatchNorm statistics for its current (averaged) weights on `n` training draws."""
        norms = [m for m in self.generator_.modules() if isinstance(m, nn.BatchNorm1d)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over this pass
        cond = torch.zeros(n, self.cond_.n_levels, device=device)
        if self.cond_.n_levels:
            cond = self.cond_.one_hot(torch.multinomial(self.cond_.p_train, n, replacement=True))
        cfg = self.cfg
        self.generator_.train()
        self.generator_(torch.cat([torch.randn(n, cfg.noise_dim, device=device), cond], 1))
        self.generator_.eval()
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum

    # ------------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, *, conditions: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw `n` encoded rows (n, n_features): one-hots for softmax spans, 0/1 for missing flags.

        Args:
            conditions: (n_features,) or (n, n_features), NaN for free entries. A fully given categorical span (a
                one-hot) sets the conditional vector for that row, so the generator aims at that level; only the first
                such span per row is used (the generator was trained with one). Conditions on values or modes are
                not modelled natively: the task layer filters.
            generator: source of all randomness here (noise, unconditional levels, category and flag draws).
        """
        require_fitted(self)
        cfg = self.cfg
        device = self.bounded_.device
        gen = generator if generator is not None else make_generator(None, device)
        self.generator_.eval()
        cond_rows = as_conditions(conditions, n, self.n_features_in_, device)
        noise = normal((n, cfg.noise_dim), gen, device)  # (n, noise_dim)
        cond = torch.zeros(n, self.cond_.n_levels, device=device)
        if self.cond_.n_levels:
            # Unconditional rows draw their level from the data's own frequencies (CTGAN's sampling rule).
            u = uniform((n, 1), gen, device)
            level = torch.searchsorted(torch.cumsum(self.cond_.p_sample, 0), u).squeeze(1)
            level = level.clamp(max=self.cond_.n_levels - 1)
            if cond_rows is not None:
                fixed, has = self.cond_.from_conditions(cond_rows)
                level = torch.where(has, fixed, level)
            cond = self.cond_.one_hot(level)
        _, rows = self._generate(noise, cond, tau=None)
        return self.layout_.draw(rows.float(), gen, draw_modes=True)

    def anomaly_scores(self, x: Tensor) -> RowScores:
        """Per-row minus critic output (weaker than a likelihood) and per-feature parts (`models.scoring`)."""
        from synthgate.models.scoring import gan_scores

        return gan_scores(self, x)

    # ---------------------------------------------------------------------------------------------- persistence
    def _state(self) -> dict[str, Tensor]:
        return {
            **{f"generator.{k}": v for k, v in self.generator_.state_dict().items()},
            **{f"critic.{k}": v for k, v in self.critic_.state_dict().items()},
            "cond.count": self.cond_.count,
        }

    @classmethod
    def _saved_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {"generator": "mlp", **config}  # saved before the residual generator: it had the LayerNorm MLP

    def _load_state(self, state: dict[str, Tensor], meta: dict[str, Any], directory: Path) -> None:
        # Saved before the packed output order: the generator's head is converted, and samples the same rows.
        state = packed_decoder_state(state, self.layout_, "generator", packed=meta.get("packed_output", False))
        self.generator_.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("generator.")})
        self.critic_.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("critic.")})
        self.cond_.count = state["cond.count"].float()
        self.cond_._set_probabilities()
        self.generator_.eval()
        self.critic_.eval()
