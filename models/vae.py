"""`VAE`: a variational autoencoder for encoded tables, in the spirit of TVAE (Xu et al. 2019).

An MLP encoder maps a row to a diagonal Gaussian q(z|x); an MLP decoder maps z to one output head per span: a Gaussian
mean with a learned sigma for values, logits for one-hot groups (categories and modes), a logit for missing flags. It
is trained on the ELBO with a standard-normal prior (Kingma & Welling 2014) and sampled by decoding prior draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from synthgate.models.backprop import clamp_backward, mlp_backward, mlp_forward
from synthgate.models.base import check_matrix, make_generator, require_fitted
from synthgate.models.layout import TrainingRows, packed_decoder_state
from synthgate.models.nn import MLP, as_conditions, normal
from synthgate.models.table_model import PrivateDefaults, TableModel
from synthgate.models.training import autocast, split_validation
from synthgate.schemas.errors import InvalidInputError

if TYPE_CHECKING:
    from synthgate.models.scoring import RowScores


@dataclass(frozen=True)
class VAEConfig(PrivateDefaults):
    latent_dim: int = 8  # 8, not 16: docs/decisions.md#vae-latent
    hidden: tuple[int, ...] = (128,)  # one hidden layer each way: as good as two of 256 on our tables, far cheaper
    norm: bool = False  # LayerNorm after hidden layers (its CPU backward costs as much as the matmuls here)
    epochs: int = 300
    batch_size: int = 2000  # four times TVAE's 500: docs/decisions.md#vae-batch-size
    lr: float = 5e-3  # high for Adam, but a small net at 1 step per epoch on small tables needs it
    weight_decay: float = 1e-5
    beta: float = 1.0  # weight of the KL term: the true ELBO, not TVAE's 0.5 (docs/decisions.md#vae-beta)
    min_sigma: float = 0.01  # floor of the decoder's per-feature sigma (TVAE clamps to [0.01, 1])
    val_fraction: float = 0.1  # rows held out for early stopping; 0 trains on everything for all epochs
    patience: int | None = 30  # epochs without a better validation ELBO before stopping; None never stops
    seed: int = 0  # seeds weight init, batch order and reparameterisation noise; sampling uses the caller's generator
    # Differential privacy (DP-SGD, models/privacy.py); epsilon None trains without it. With an epsilon
    # there is no validation split or early stopping (both select on private rows) and the decoder sigma stays fixed.
    epsilon: float | None = None
    delta: float | None = None  # None: 1 / (10 n), see models.privacy.default_delta
    max_grad_norm: float = 1.0  # per-sample clipping bound C
    # The encoder sees each mode one-hot folded into one ordinal feature (`SpanLayout.fold_modes`), a third of the
    # inputs: docs/decisions.md#fold-modes. Checkpoints saved before it load with False.
    fold_modes: bool = True
    # The decoder starts as the model of independent columns (output biases at the training rows' marginals, output
    # weights scaled by `START_WEIGHT_SCALE`), so training spends its steps on the dependencies:
    # docs/decisions.md#vae-marginal-start. Under DP-SGD the marginals are released under DP first.
    marginal_start: bool = True
    # Under DP-SGD: this share of epsilon and delta releases the 1-way marginals (`models.dp_start`) for the marginal
    # start (0: no marginal start under DP; 0.1 in `PRIVATE`); steps of non-private pre-training on rows drawn from
    # the public domain before it (50 in `PRIVATE`); a noise schedule's last-over-first noise multiplier
    # (`models.privacy.noise_schedule`, off): docs/decisions.md#dp-sgd-options.
    private_marginal_share: float = 0.0
    public_pretrain_steps: int = 0
    noise_decay: float = 1.0
    hand_backprop: bool = True  # CPU steps with the hand-written gradients (`models.backprop`); False: autograd

    # Used instead of the defaults when `epsilon` is set (`PrivateDefaults`): docs/decisions.md#dp-defaults.
    PRIVATE: ClassVar[dict[str, Any]] = {
        "batch_size": 1000,
        "epochs": 20,
        "private_marginal_share": 0.1,
        "public_pretrain_steps": 50,
    }


# The decoder's output weights at the start of a `marginal_start` fit, as a share of their default draw: small, so
# every row's first output is near the marginals (docs/decisions.md#vae-marginal-start).
START_WEIGHT_SCALE = 0.2


class VAEModule(nn.Module):
    """Encoder to (mu, logvar), decoder to raw per-feature outputs, and a per-value-feature log sigma."""

    def __init__(self, n_in: int, n_linear: int, config: VAEConfig, n_out: int):
        super().__init__()
        hidden = tuple(config.hidden)
        narrow = config.epsilon is None  # Opacus computes per-sample gradients for plain nn.Linear only
        self.encoder = MLP(n_in, hidden, 2 * config.latent_dim, norm=config.norm, narrow=narrow)
        # The decoder emits the layout's packed order (`SpanLayout.packed_width`), so the loss needs no gathers.
        self.decoder = MLP(config.latent_dim, hidden[::-1], n_out, norm=config.norm, narrow=narrow)
        self.log_sigma = nn.Parameter(torch.full((n_linear,), math.log(0.1)))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (n, latent) each
        return mu, logvar.clamp(-10, 10)

    def forward(self, x: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Decoder output (n, d) for the sampled codes, and the posterior's mu, logvar and std (n, latent) each."""
        mu, logvar = self.encode(x)
        std = torch.exp(0.5 * logvar)
        z = torch.addcmul(mu, std, noise)  # reparameterisation trick (Kingma & Welling 2014, sec. 2.4)
        return self.decoder(z), mu, logvar, std


class VAE(TableModel):
    """Tabular VAE over the `TableEncoder` layout.

    Args:
        config: hyperparameters; `VAEConfig()` when omitted.
        spans: the encoder's spans (which features are values, one-hots or flags); all values when omitted.
        device: "auto"/None for CUDA when present, else CPU.

    Attributes:
        module_: the trained `VAEModule`.
        history_: the training `History` (losses per epoch, best epoch, seconds).
        n_features_in_: width of the encoded rows seen in `fit`.
    """

    kind: ClassVar[str] = "vae"
    config_class: ClassVar[type] = VAEConfig
    normalization: ClassVar[str] = "mode"  # the encoder the flow fits for it (see `GenerativeModel`)

    # -------------------------------------------------------------------------------------------------- fitting
    def _build(self, n_features: int, device: torch.device) -> None:
        cfg = self.cfg
        n_in = self.layout_.encoder_width(cfg.fold_modes)
        self.module_ = VAEModule(n_in, self.layout_.linear.numel(), cfg, self.layout_.packed_width).to(device)
        self.n_features_in_ = n_features

    def _sigma(self) -> Tensor:
        cfg = self.cfg
        return self.module_.log_sigma.clamp(math.log(cfg.min_sigma), 0.0)  # (n_linear,)

    def _loss(self, inputs: Tensor, target: Tensor, noise: Tensor, net: nn.Module | None = None) -> Tensor:
        """Negative ELBO per row, averaged: reconstruction NLL + beta * KL(q(z|x) || N(0, I)).

        `inputs` are the encoder's view of the rows (`SpanLayout.encoder_input`); `target` is their packed copy
        (`SpanLayout.pack`), the decoder's target.
        """
        cfg = self.cfg
        logits, mu, logvar, std = (net or self.module_)(inputs, noise)
        recon = self.layout_.packed_loss(logits.float(), target, self._sigma())  # mean per row
        # KL(N(mu, std^2) || N(0, I)) = 0.5 * sum(mu^2 + std^2 - logvar - 1) per row (Kingma & Welling, app. B), from
        # the forward's std: four tensor ops where exp(logvar) and the constant inside the sum took eight.
        kl_sum = torch.addcmul(mu * mu, std, std).sub_(logvar).float().sum()
        return recon + (0.5 * cfg.beta / target.shape[0]) * kl_sum - 0.5 * cfg.beta * cfg.latent_dim

    def _loss_and_gradients(self, inputs: Tensor, target: Tensor, noise: Tensor) -> Tensor:
        """`_loss` of a batch, with every parameter's `.grad` set by hand instead of by autograd (`models.backprop`).

        `target` is the packed batch (`SpanLayout.pack`). The same loss and gradients as `_loss(...).backward()` to
        float rounding, in about half the tensor ops (`models.backprop`); a clamp's bounds themselves pass no gradient here, a measure-zero difference.
        """
        cfg = self.cfg
        module, n = self.module_, inputs.shape[0]
        with torch.no_grad():
            encoded, encoder_saved = mlp_forward(module.encoder, inputs)
            mu, logvar = encoded.chunk(2, dim=1)
            clamped = logvar.clamp(-10, 10)
            std = clamped.mul(0.5).exp_()
            z = torch.addcmul(mu, std, noise)
            out, decoder_saved = mlp_forward(module.decoder, z)
            recon, d_out, d_log_sigma = self.layout_.packed_loss_grad(out, target, self._sigma())
            c = cfg.beta / n  # the KL term's weight per row
            kl_sum = torch.addcmul(mu * mu, std, std).sub_(clamped).sum()
            loss = recon + 0.5 * c * kl_sum - 0.5 * cfg.beta * cfg.latent_dim
            d_z = mlp_backward(module.decoder, decoder_saved, d_out, input_grad=True)
            # z = mu + std * noise, std = exp(logvar / 2), and the KL term 0.5 c (mu^2 + std^2 - logvar) per value.
            d_mu = torch.add(d_z, mu, alpha=c)
            d_std = torch.addcmul(std * c, d_z, noise)
            d_logvar = torch.addcmul(torch.full_like(std, -0.5 * c), d_std, std, value=0.5)
            d_encoded = torch.cat([d_mu, clamp_backward(d_logvar, logvar, -10.0, 10.0)], dim=1)
            mlp_backward(module.encoder, encoder_saved, d_encoded, input_grad=False)
            module.log_sigma.grad = clamp_backward(d_log_sigma, module.log_sigma, math.log(cfg.min_sigma), 0.0)
        return loss

    def _fit(self, x: Tensor, gen: torch.Generator, progress: Any) -> None:
        cfg, device, private = self.cfg, self.device_, self.private
        train_rows, x_val = (None, None) if private else split_validation(x, cfg.val_fraction, gen)
        share = cfg.private_marginal_share if private and cfg.marginal_start else 0.0
        marginal: dict[str, float] | None = None
        if private:
            self.module_.log_sigma.requires_grad_(False)  # used outside forward: Opacus cannot clip its grads
            if cfg.public_pretrain_steps:
                self._pretrain_public(gen)
        if cfg.marginal_start and not private:
            self._start_at_marginals(x, x_val)
        elif share > 0:
            marginal = self._start_at_private_marginals(x, share, gen)
        opt = self._optimizer(self.module_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        net, dp = self.module_, None
        if private:  # DP-SGD hook (models/privacy.py), with what the marginal release left of the budget
            dp = self._make_private(self.module_, opt, x.shape[0], share=1.0 - share)
            opt, net = dp.optimizer, dp.module
        latent = cfg.latent_dim
        training_rows = TrainingRows(self.layout_, x, cfg.fold_modes)
        by_hand = self._hand_backprop(device, *self.module_.children())

        def step(index: Tensor | None) -> Tensor:  # (b,) rows of x, or None for all of them
            inputs, packed = training_rows.take(index)
            noise = torch.randn(packed.shape[0], latent, device=device)
            if by_hand:
                loss = self._loss_and_gradients(inputs, packed, noise)
            else:
                with autocast(device):
                    loss = self._loss(inputs, packed, noise, net)
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            return loss

        validation = None if x_val is None else TrainingRows(self.layout_, x_val, cfg.fold_modes)

        def evaluate(part: slice) -> Tensor:  # rows x_val[part]; their encoder input and target made once a fit
            inputs, packed = validation.take(None)
            # The posterior mean stands in for the noise draw: a stable score for early stopping.
            zero = torch.zeros(part.stop - part.start, latent, device=device)
            return self._loss(inputs[part], packed[part], zero)

        self._train_module(step, evaluate, x, gen, rows=train_rows, x_val=x_val, privacy=dp, progress=progress)
        if dp is not None:
            self.module_ = dp.detach()
            self.privacy_ = dp.report()
            if marginal is not None:  # basic composition of the two releases
                sgd = self.privacy_
                self.privacy_ = {
                    **sgd,
                    "epsilon": round(sgd["epsilon"] + marginal["epsilon"], 4),
                    "delta": sgd["delta"] + marginal["delta"],
                    "target_epsilon": cfg.epsilon,
                    "sgd_epsilon": sgd["epsilon"],
                    "marginal_epsilon": marginal["epsilon"],
                }

    def _pretrain_public(self, gen: torch.Generator) -> None:
        """`public_pretrain_steps` Adam steps on fresh batches of rows drawn from the public domain alone."""
        from synthgate.models.dp_start import public_domain_rows

        cfg = self.cfg
        opt = self._optimizer(self.module_.parameters(), lr=cfg.lr, private=False)
        self.module_.train()
        for _ in range(cfg.public_pretrain_steps):
            inputs, packed = TrainingRows(
                self.layout_, public_domain_rows(self.layout_, cfg.batch_size, gen), cfg.fold_modes
            ).take(None)
            loss = self._loss(inputs, packed, torch.randn(packed.shape[0], cfg.latent_dim, device=packed.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    @torch.no_grad()
    def _start_at_private_marginals(self, x: Tensor, share: float, gen: torch.Generator) -> dict[str, float]:
        """The marginal start from 1-way marginals released with `share` of the budget (`models.dp_start`)."""
        from synthgate.models.dp_start import private_marginals
        from synthgate.models.privacy import default_delta

        cfg = self.cfg
        eps, delta = share * cfg.epsilon, share * (cfg.delta or default_delta(x.shape[0]))
        mean = private_marginals(x, self.layout_, epsilon=eps, delta=delta, generator=gen)
        head = self.module_.decoder[-1]
        head.bias.copy_(self.layout_.marginal_output(mean))
        head.weight.mul_(START_WEIGHT_SCALE)
        return {"epsilon": eps, "delta": delta}

    @torch.no_grad()
    def _start_at_marginals(self, x: Tensor, x_val: Tensor | None) -> None:
        """Set the decoder's output layer to emit the training rows' marginals for any code (see `marginal_start`).

        The training rows' mean is the whole table's sum less the validation rows', so no copy of the training rows
        is made.
        """
        total, n = x.sum(0), x.shape[0]  # (n_features,)
        if x_val is not None:
            total, n = total - x_val.sum(0), n - x_val.shape[0]
        mean = total / n
        head = self.module_.decoder[-1]
        head.bias.copy_(self.layout_.marginal_output(mean))
        head.weight.mul_(START_WEIGHT_SCALE)

    # ------------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def _decode(self, z: Tensor, generator: torch.Generator | None) -> Tensor:
        """Decode latent codes; with a generator, draw values, categories and flags, else return the modes."""
        probs = self.layout_.activate(self.module_.decoder(z))  # (n, d) in feature order
        if generator is None:
            return self.layout_.harden(probs)
        lin = self.layout_.linear
        if lin.numel():  # the decoder's Gaussian: mean + sigma * noise, as TVAE samples
            probs[:, lin] = probs[:, lin] + self._sigma().exp() * normal((z.shape[0], lin.numel()), generator, z.device)
        return self.layout_.draw(probs, generator)

    @torch.no_grad()
    def sample(self, n: int, *, conditions: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw `n` encoded rows (n, n_features): one-hots for softmax spans, 0/1 for missing flags.

        Raises:
            InvalidInputError: `conditions` were given; the VAE cannot honour them (filter decoded rows instead).
        """
        require_fitted(self)
        if conditions is not None:
            as_conditions(conditions, n, self.n_features_in_, self.layout_.linear.device)  # shape errors first
            raise InvalidInputError("the vae does not support conditions natively; sample and filter rows instead")
        cfg = self.cfg
        device = self.layout_.linear.device
        gen = generator if generator is not None else make_generator(None, device)
        self.module_.eval()
        z = normal((n, cfg.latent_dim), gen, device)  # prior draws, (n, latent)
        return self._decode(z, gen)

    @torch.no_grad()
    def interpolate(self, row_a: Tensor, row_b: Tensor, steps: int) -> Tensor:
        """Decode `steps` points on the line between the posterior means of two encoded rows.

        Args:
            row_a, row_b: (n_features,) encoded rows.
            steps: number of points, both ends included (>= 2).

        Returns:
            (steps, n_features) decoded rows, deterministic: argmax one-hots, flag probabilities, value means.
        """
        require_fitted(self)
        if steps < 2:
            raise InvalidInputError(f"interpolate needs steps >= 2, got {steps}")
        device = self.layout_.linear.device
        self.module_.eval()
        rows = torch.stack([torch.as_tensor(row_a), torch.as_tensor(row_b)]).float().to(device)  # (2, d)
        fold = self.cfg.fold_modes
        mu, _ = self.module_.encode(self.layout_.encoder_input(check_matrix(rows, "rows"), fold))
        t = torch.linspace(0, 1, steps, device=device)[:, None]  # (steps, 1)
        z = (1 - t) * mu[0] + t * mu[1]  # (steps, latent)
        return self._decode(z, None)

    def anomaly_scores(self, x: Tensor) -> RowScores:
        """Per-row negative importance-weighted bound and per-feature parts (`models.scoring`)."""
        from synthgate.models.scoring import vae_scores

        return vae_scores(self, x)

    # ---------------------------------------------------------------------------------------------- persistence
    def _state(self) -> dict[str, Tensor]:
        return self.module_.state_dict()

    @classmethod
    def _saved_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {"fold_modes": False, **config}  # saved before `fold_modes`: an encoder on the full input

    def _load_state(self, state: dict[str, Tensor], meta: dict[str, Any], directory: Path) -> None:
        packed = meta.get("packed_output", False)  # saved before the packed layout: converted, same samples
        self.module_.load_state_dict(packed_decoder_state(state, self.layout_, "decoder", packed=packed))
        self.module_.eval()
