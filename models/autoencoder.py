"""`Autoencoder`: a deterministic autoencoder whose latent codes get a fitted Gaussian mixture to sample from.

A plain autoencoder reconstructs well but has no prior to sample; a VAE has one but pays for it with blurrier
reconstructions. Fitting a density to the codes after training (as in "From Variational to Deterministic
Autoencoders", Ghosh et al. 2020, "ex-post density estimation") keeps the sharp decoder and still gives a sampler: codes
are drawn from the project's `GaussianMixture` (component count by BIC) and decoded.

With `epsilon` both stages are private: DP-SGD (`models.privacy`) trains the networks with
(1 - dp_latent_share) of the budget, with no validation split or early stopping, and the codes are squashed into
(-2, 2) by 2 tanh(z / 2) so their bound is known before any row is seen; the latent mixture is then `gmm_dp` (DP-EM
on noisy sufficient statistics, fixed components, `models/gmm_dp.py`) with the rest. The code standardisation is off
(mean 0, scale 1: the codes' own mean and spread are private). The two stages compose: epsilons and deltas add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from synthgate.models.backprop import mlp_backward, mlp_forward
from synthgate.models.base import make_generator, require_fitted
from synthgate.models.gmm import GaussianMixture, GMMConfig
from synthgate.models.layout import TrainingRows, packed_decoder_state
from synthgate.models.nn import MLP, as_conditions
from synthgate.models.privacy import default_delta
from synthgate.models.table_model import PrivateDefaults, TableModel
from synthgate.models.training import autocast, split_validation
from synthgate.schemas.errors import InvalidInputError

if TYPE_CHECKING:
    from synthgate.models.scoring import RowScores


@dataclass(frozen=True)
class AutoencoderConfig(PrivateDefaults):
    latent_dim: int = 16
    hidden: tuple[int, ...] = (128,)  # small and fast, as the vae's: docs/decisions.md#autoencoder-size
    epochs: int = 300
    batch_size: int = 1000
    lr: float = 5e-3
    weight_decay: float = 1e-5
    latent_noise: float = 0.05  # N(0, s^2) added to codes in training: a smoother decoder between training codes
    n_components: int | None = None  # latent GMM components; None picks them by BIC
    max_components: int = 12
    # The latent GMM is fitted on at most this many codes (a uniform subsample), at scikit-learn's tolerance, 10x the
    # table GMM's: docs/decisions.md#autoencoder-latent-gmm.
    latent_rows: int = 100_000
    latent_tol: float = 1e-3
    val_fraction: float = 0.1
    patience: int | None = 30
    seed: int = 0
    # Differential privacy (see the module docstring); epsilon None trains without it.
    epsilon: float | None = None
    delta: float | None = None  # None: 1 / (10 n), see models.privacy.default_delta
    max_grad_norm: float = 1.0  # per-sample clipping bound C
    dp_latent_share: float = 0.2  # share of epsilon and delta for the DP-EM latent mixture
    dp_components: int = 5  # latent mixture components when private (no BIC search on private codes)
    dp_em_iter: int = 10  # DP-EM iterations when private
    # The encoder reads each mode one-hot folded into one ordinal feature (`SpanLayout.fold_modes`), as the VAE's
    # does. Checkpoints saved before it load with False.
    fold_modes: bool = True
    hand_backprop: bool = True  # CPU steps with the hand-written gradients (`models.backprop`); False: autograd

    # Used instead of the defaults when `epsilon` is set (`PrivateDefaults`): docs/decisions.md#dp-defaults.
    PRIVATE: ClassVar[dict[str, Any]] = {"batch_size": 1000, "epochs": 20}


class AutoencoderModule(nn.Module):
    def __init__(self, n_in: int, config: AutoencoderConfig, n_out: int):
        super().__init__()
        hidden = tuple(config.hidden)
        narrow = config.epsilon is None  # Opacus computes per-sample gradients for plain nn.Linear only
        self.encoder = MLP(n_in, hidden, config.latent_dim, narrow=narrow)
        # The decoder emits the layout's packed order (`SpanLayout.packed_width`), so the loss needs no gathers.
        self.decoder = MLP(config.latent_dim, hidden[::-1], n_out, narrow=narrow)
        self.bounded = config.epsilon is not None  # DP: codes in (-2, 2), the DP mixture's clipping bound

    def code(self, x: Tensor) -> Tensor:
        z = self.encoder(x)  # (n, latent)
        return 2 * torch.tanh(z / 2) if self.bounded else z

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        return self.decoder(self.code(x) + noise)  # (n, d) raw outputs


class Autoencoder(TableModel):
    """Deterministic autoencoder plus a latent `GaussianMixture`.

    Args:
        config: hyperparameters; `AutoencoderConfig()` when omitted.
        spans: the encoder's spans; all values when omitted.
        device: "auto"/None for CUDA when present, else CPU.

    Attributes:
        module_: the trained `AutoencoderModule`.
        latent_: the `GaussianMixture` fitted to the standardised training codes.
        latent_mean_, latent_std_: (latent_dim,) standardisation of the codes (the GMM's reg_covar assumes unit scale).
        history_: the training `History`.
        n_features_in_: width of the encoded rows seen in `fit`.
    """

    kind: ClassVar[str] = "autoencoder"
    config_class: ClassVar[type] = AutoencoderConfig
    # z-scores, unlike the vae and the gan: docs/decisions.md#normalization-per-model.
    normalization: ClassVar[str] = "standard"

    def _build(self, n_features: int, device: torch.device) -> None:
        n_in = self.layout_.encoder_width(self.cfg.fold_modes)
        self.module_ = AutoencoderModule(n_in, self.cfg, self.layout_.packed_width).to(device)

    def _gmm_config(self) -> GMMConfig:
        cfg = self.cfg
        return GMMConfig(
            n_components=cfg.n_components, max_components=cfg.max_components, seed=cfg.seed, tol=cfg.latent_tol
        )

    def _fit(self, x: Tensor, gen: torch.Generator, progress: Any) -> None:
        """Train the autoencoder, then fit the GMM to the codes of the rows (a uniform subsample of `latent_rows`
        when there are more)."""
        cfg, device, private = self.cfg, self.device_, self.private
        train_rows, x_val = (None, None) if private else split_validation(x, cfg.val_fraction, gen)
        opt = self._optimizer(self.module_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        net, dp = self.module_, None
        if private:  # DP-SGD hook (models/privacy.py) with the networks' share of the budget
            dp = self._make_private(self.module_, opt, x.shape[0], share=1 - cfg.dp_latent_share)
            opt, net = dp.optimizer, dp.module

        layout = self.layout_
        training_rows = TrainingRows(layout, x, cfg.fold_modes)
        by_hand = self._hand_backprop(device, *self.module_.children())

        def step(index: Tensor | None) -> Tensor:  # (b,) rows of x, or None for all; the packed rows are the target
            inputs, packed = training_rows.take(index)
            noise = cfg.latent_noise * torch.randn(packed.shape[0], cfg.latent_dim, device=device)
            if by_hand:
                loss = self._loss_and_gradients(inputs, packed, noise)
            else:
                with autocast(device):
                    loss = layout.packed_loss(net(inputs, noise).float(), packed)
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            return loss

        validation = None if x_val is None else TrainingRows(layout, x_val, cfg.fold_modes)

        def evaluate(part: slice) -> Tensor:  # rows x_val[part]; their encoder input and target made once a fit
            inputs, packed = validation.take(None)
            zero = torch.zeros(part.stop - part.start, cfg.latent_dim, device=device)
            return layout.packed_loss(self.module_(inputs[part], zero).float(), packed[part])

        self._train_module(step, evaluate, x, gen, rows=train_rows, x_val=x_val, privacy=dp, progress=progress)
        if dp is not None:
            self.module_ = dp.detach()
            delta = cfg.delta or default_delta(x.shape[0])
            self._fit_private_latent(self._codes(x), delta, dp.report(), device)
            return
        coded = x
        if x.shape[0] > cfg.latent_rows:  # a uniform subsample: the density has a few thousand parameters
            pick = torch.randperm(x.shape[0], generator=gen, device=gen.device)[: cfg.latent_rows]
            coded = x.index_select(0, pick.to(device))  # only these rows are coded
        codes = self._codes(coded)  # (n, latent)
        self.latent_mean_ = codes.mean(0)
        self.latent_std_ = codes.std(0).clamp(min=1e-6)
        self.latent_ = GaussianMixture(self._gmm_config(), device=device).fit(
            (codes - self.latent_mean_) / self.latent_std_
        )

    def _loss_and_gradients(self, inputs: Tensor, target: Tensor, noise: Tensor) -> Tensor:
        """The reconstruction loss of a batch, with every parameter's `.grad` set by hand (`models.backprop`).

        `target` is the packed batch (`SpanLayout.pack`), `noise` the latent noise. The same loss and gradients as
        `packed_loss(module_(inputs, noise), target).backward()` to float rounding, in about half the tensor ops.
        """
        module = self.module_
        with torch.no_grad():
            code, encoder_saved = mlp_forward(module.encoder, inputs)
            out, decoder_saved = mlp_forward(module.decoder, code + noise)
            loss, d_out, _ = self.layout_.packed_loss_grad(out, target)
            d_code = mlp_backward(module.decoder, decoder_saved, d_out, input_grad=True)
            mlp_backward(module.encoder, encoder_saved, d_code, input_grad=False)
        return loss

    @torch.no_grad()
    def _codes(self, x: Tensor, chunk_rows: int = 65_536) -> Tensor:
        """Latent codes of rows (n, d) in chunks: one pass over a million rows at once allocates gigabytes of
        activations (docs/decisions.md#autoencoder-latent-gmm)."""
        fold = self.cfg.fold_modes
        chunks = (self.layout_.encoder_input(x[i : i + chunk_rows], fold) for i in range(0, x.shape[0], chunk_rows))
        return torch.cat([self.module_.code(chunk).float() for chunk in chunks])

    def _fit_private_latent(self, codes: Tensor, delta: float, sgd: dict[str, Any], device: torch.device) -> None:
        """DP-EM mixture on the bounded codes with the latent share of the budget; no standardisation."""
        from synthgate.models.gmm_dp import DPGaussianMixture, DPGMMConfig

        cfg = self.cfg
        share = cfg.dp_latent_share
        self.latent_mean_ = torch.zeros(cfg.latent_dim, device=device)
        self.latent_std_ = torch.ones(cfg.latent_dim, device=device)
        gmm_config = DPGMMConfig(
            n_components=cfg.dp_components,
            max_iter=cfg.dp_em_iter,
            epsilon=share * cfg.epsilon,
            delta=share * delta,
            bound=2.0,
            seed=cfg.seed,
        )
        self.latent_ = DPGaussianMixture(gmm_config, device=device).fit(codes)
        latent = self.latent_.privacy_
        self.privacy_ = {
            **sgd,
            "epsilon": round(sgd["epsilon"] + latent["epsilon"], 4),  # basic composition of the two stages
            "delta": sgd["delta"] + latent["delta"],
            "target_epsilon": cfg.epsilon,
            "sgd_epsilon": sgd["epsilon"],
            "latent_epsilon": latent["epsilon"],
        }

    @torch.no_grad()
    def sample(self, n: int, *, conditions: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw `n` encoded rows: GMM codes, decoded; one-hots drawn from the decoder's softmax, 0/1 flags.

        Raises:
            InvalidInputError: `conditions` were given; sample and filter decoded rows instead.
        """
        require_fitted(self)
        device = self.latent_mean_.device
        if conditions is not None:
            as_conditions(conditions, n, self.n_features_in_, device)
            raise InvalidInputError("the autoencoder does not support conditions natively; sample and filter instead")
        gen = generator if generator is not None else make_generator(None, device)
        self.module_.eval()
        z = self.latent_.sample(n, generator=gen).to(device) * self.latent_std_ + self.latent_mean_  # (n, latent)
        probs = self.layout_.activate(self.module_.decoder(z))
        return self.layout_.draw(probs, gen)

    def anomaly_scores(self, x: Tensor) -> RowScores:
        """Per-row reconstruction loss plus latent -log density, and per-feature parts (`models.scoring`)."""
        from synthgate.models.scoring import autoencoder_scores

        return autoencoder_scores(self, x)

    def _state(self) -> dict[str, Tensor]:
        return {**self.module_.state_dict(), "latent_mean": self.latent_mean_, "latent_std": self.latent_std_}

    def _save_extra(self, directory: Path) -> None:
        self.latent_.save(directory / "latent_gmm")  # the GMM's own checkpoint, in a subfolder

    @classmethod
    def _saved_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {"fold_modes": False, **config}  # saved before `fold_modes`: an encoder on the full input

    def _load_state(self, state: dict[str, Tensor], meta: dict[str, Any], directory: Path) -> None:
        self.latent_mean_ = state.pop("latent_mean")
        self.latent_std_ = state.pop("latent_std")
        packed = meta.get("packed_output", False)  # saved before the packed layout: converted, same samples
        self.module_.load_state_dict(packed_decoder_state(state, self.layout_, "decoder", packed=packed))
        self.module_.eval()
        device = self.latent_mean_.device
        if self.private:
            from synthgate.models.gmm_dp import DPGaussianMixture

            self.latent_ = DPGaussianMixture.load(directory / "latent_gmm", device=device)
        else:
            self.latent_ = GaussianMixture.load(directory / "latent_gmm", device=device)
