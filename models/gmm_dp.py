"""Differentially private Gaussian mixture: EM whose every M-step sees only noisy sufficient statistics (DP-EM).

Park, Foulds, Chaudhuri & Welling 2017 ("DP-EM: Differentially Private Expectation Maximization"): an EM iteration
touches the data only through sums over rows of the responsibilities r_ik, of r_ik x_i, of r_ik x_i x_i^T and of r_ik
times each row's one-hot levels. Each row's responsibilities sum to 1, so after bounding the rows these sums have a
known L2 sensitivity (adding or removing one row):

- counts N_k = sum_i r_ik:                   1
- sums S_k = sum_i r_ik x_i:                 R  (every row clipped to L2 norm R, data-independent: bound * sqrt(d_c))
- second moments Q_k = sum_i r_ik x_i x_i^T: R^2 (Frobenius; the upper triangle is noised and mirrored)
- level counts C_k = sum_i r_ik onehot_i:    sqrt(number of categorical groups)

Every block gets Gaussian noise of `z * sensitivity`, the same multiplier z for the 4 blocks of each of the fixed
`n_iter` iterations. RDP composes additively (Mironov 2017), so the whole fit is one Gaussian mechanism with
multiplier z / sqrt(4 n_iter); z is solved from (epsilon, delta) with `models.privacy.gaussian_sigma` and the spent
epsilon is recomputed with `gaussian_epsilon` from the noise actually used. Nothing else reads the rows: the
initialisation is random and data-independent (no k-means++ on private rows), the number of components is fixed (a BIC
search would choose on the private rows), there is no convergence test, and only the final noisy parameters are kept.
Noisy covariances are symmetrised and projected onto the positive-definite cone by clipping eigenvalues at
`reg_covar`; a component whose noisy count falls below a few noise standard deviations keeps its previous mean and
covariance (post-processing, free).

The encoder bounds every continuous value in DP runs (`tasks.dp_preprocess`: standard normalisation from public or DP
bounds maps [min, max] to [-2, 2]), so the default `bound=2` clips nothing on tables.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from torch import Tensor

from synthgate.models.base import check_matrix, config_from_dict, make_generator, resolve_device
from synthgate.models.gmm import GaussianMixture, GMMConfig
from synthgate.models.gmm_math import MixtureLayout, PreparedRows, precision_cholesky
from synthgate.models.privacy import check_budget, default_delta, gaussian_epsilon, gaussian_sigma
from synthgate.schemas.errors import InvalidInputError

logger = logging.getLogger(__name__)

_BLOCKS = 4  # counts, sums, second moments, level counts: each released every iteration


@dataclass(frozen=True)
class DPGMMConfig(GMMConfig):
    """`GMMConfig` plus the budget; `n_components` and `max_iter` are fixed up front (no BIC, no tolerance stop)."""

    n_components: int | None = 5  # None is refused: choosing k by BIC would look at the private rows
    max_iter: int = 10  # EM iterations, all of them run: each costs budget, and stopping early would look at the data
    epsilon: float = 1.0
    delta: float | None = None  # None: 1 / (10 n), see models.privacy.default_delta
    bound: float = 2.0  # continuous rows are clipped to L2 norm bound * sqrt(d_c) (the encoder maps bounds to +-2)
    init_scale: float = 1.0  # initial means ~ N(0, init_scale^2) (data-free)
    init_var: float = 0.25  # initial covariances init_var * I: narrow enough that components separate in few steps


class DPGaussianMixture(GaussianMixture):
    """A `GaussianMixture` fitted by DP-EM; sampling, conditioning and scoring are the parent's (post-processing).

    Attributes (besides the parent's):
        privacy_: the fit's privacy report (spent epsilon, delta, noise multiplier, iterations, clipping radius).
    """

    config_class: ClassVar[type] = DPGMMConfig

    def __init__(self, config: DPGMMConfig | None = None, *, spans: Any = None, device: Any = None):
        super().__init__(config or DPGMMConfig(), spans=spans, device=device)

    def fit(self, x: Tensor, *, conditions: Tensor | None = None, progress: Callable[..., None] | None = None) -> Self:
        """Run `max_iter` DP-EM iterations with `n_components` components, spending at most (epsilon, delta)."""
        cfg = self.config
        if cfg.n_components is None:
            raise InvalidInputError(
                "the private GMM needs a fixed n_components: a BIC search would choose it on the private rows"
            )
        if cfg.max_iter < 1:
            raise InvalidInputError("max_iter must be at least 1")
        device = resolve_device(self.device)
        # No rows is allowed (a class with no images still gets a noise-only fit, so no branch depends on the data).
        x = x.reshape(0, x.shape[-1]).float() if x.shape[0] == 0 else check_matrix(x)
        x = x.to(device=device, dtype=torch.float64)  # (n, d)
        n, d = x.shape
        delta = cfg.delta if cfg.delta is not None else default_delta(n)
        check_budget(cfg.epsilon, delta, n)
        layout = MixtureLayout.from_spans(self.spans, d, device)
        data = PreparedRows.of(x, layout)
        d_c = data.continuous.shape[1]
        radius = cfg.bound * math.sqrt(max(d_c, 1))
        norms = data.continuous.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (n, 1)
        data.continuous = data.continuous * (radius / norms).clamp(max=1.0)  # L2 clip: sensitivity R, R^2 below
        gen = make_generator(cfg.seed, device)
        # One Gaussian mechanism with multiplier z_total over the whole fit = 4 * max_iter releases with z each.
        z_total = gaussian_sigma(cfg.epsilon, delta)
        z = z_total * math.sqrt(_BLOCKS * cfg.max_iter)
        params = self._random_params(cfg.n_components, d_c, data.widths, device, gen)
        for _ in range(cfg.max_iter):
            _, log_resp = self._e_step(data, params)
            params = self._noisy_m_step(data, log_resp.exp(), params, z, radius, gen)
        spent = gaussian_epsilon(z / math.sqrt(_BLOCKS * cfg.max_iter), delta)
        params.update(lower_bound=float("nan"), converged=True, n_iter=cfg.max_iter)
        self._set_params(params, layout, d)
        self.bic_ = {}
        self.privacy_ = {
            "epsilon": round(spent, 4),
            "delta": delta,
            "target_epsilon": cfg.epsilon,
            "noise_multiplier": round(z, 4),
            "iterations": cfg.max_iter,
            "clip_radius": radius,
            "mechanism": "DP-EM (Park et al. 2017), Gaussian noise on sufficient statistics, RDP composition",
        }
        logger.info(
            "gmm_dp: %d components, %d DP-EM iterations on %d rows: epsilon %.3g (delta %.2g), z=%.1f per release",
            cfg.n_components, cfg.max_iter, n, spent, delta, z,
        )  # fmt: skip
        return self

    def _random_params(
        self, k: int, d_c: int, widths: list[int], device: torch.device, gen: torch.Generator
    ) -> dict[str, Any]:
        """Data-independent start: random means, broad equal covariances, equal weights, jittered level shares."""
        cfg, f64 = self.config, torch.float64
        means = cfg.init_scale * torch.randn(k, d_c, dtype=f64, device=device, generator=gen)  # (k, d_c)
        cov = cfg.init_var * torch.eye(d_c, dtype=f64, device=device).expand(k, d_c, d_c).clone()
        level_probs = []
        for w in widths:
            p = 1 + 0.1 * torch.rand(k, w, dtype=f64, device=device, generator=gen)  # (k, w): symmetry breaking
            level_probs.append(p / p.sum(1, keepdim=True))
        return {
            "weights": torch.full((k,), 1 / k, dtype=f64, device=device),
            "means": means,
            "cov": cov,
            "prec_chol": precision_cholesky(cov),
            "level_probs": level_probs,
        }

    def _noisy_m_step(
        self,
        data: PreparedRows,
        resp: Tensor,
        previous: dict[str, Any],
        z: float,
        radius: float,
        gen: torch.Generator,
    ) -> dict[str, Any]:
        """M-step from noisy counts, sums, second moments and level counts; (n, k) responsibilities in."""
        cfg = self.config
        k = resp.shape[1]
        x = data.continuous  # (n, d_c)
        d_c = x.shape[1]
        dev, f64 = x.device, torch.float64

        def noise(*shape: int, scale: float) -> Tensor:
            return scale * torch.randn(*shape, dtype=f64, device=dev, generator=gen)

        counts = resp.sum(0) + noise(k, scale=z)  # (k,) sensitivity 1
        sums = resp.T @ x + noise(k, d_c, scale=z * radius)  # (k, d_c) sensitivity R
        second = torch.einsum("nk,nd,ne->kde", resp, x, x)  # (k, d_c, d_c) sensitivity R^2 (Frobenius)
        upper = torch.triu(noise(k, d_c, d_c, scale=z * radius**2))
        second = second + upper + torch.triu(upper, diagonal=1).transpose(-1, -2)
        # Below a few noise standard deviations a count is mostly noise: keep that component's previous shape.
        floor = max(3.0 * z, 1.0)
        alive = counts > floor  # (k,)
        safe = counts.clamp_min(floor)
        means = torch.where(alive[:, None], sums / safe[:, None], previous["means"])
        means = means.clamp(-cfg.bound, cfg.bound)  # the rows lie within the bound; so does any sensible mean
        cov = second / safe[:, None, None] - means[:, :, None] * means[:, None, :]
        cov = _project_psd(cov, cfg.reg_covar)
        cov = torch.where(alive[:, None, None], cov, previous["cov"])
        weights = counts.clamp_min(0) + 1e-3
        level_probs = []
        if data.widths:
            n_groups = len(data.widths)
            level = resp.T @ data.onehot + noise(k, data.onehot.shape[1], scale=z * math.sqrt(n_groups))
            level = level.clamp_min(0) + cfg.cat_smoothing
            level_probs = [c / c.sum(1, keepdim=True) for c in torch.split(level, data.widths, dim=1)]
        return {
            "weights": weights / weights.sum(),
            "means": means,
            "cov": cov,
            "prec_chol": precision_cholesky(cov),
            "level_probs": level_probs,
        }

    # ---------------------------------------------------------------------------------------------- persistence
    def save(self, directory: Path) -> None:
        """The parent's checkpoint, relabelled `gmm_dp` with the DP config and the privacy report."""
        super().save(directory)
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        config.update(kind="gmm_dp", **{k: getattr(self.config, k) for k in ("epsilon", "delta", "bound")})
        config.update(init_scale=self.config.init_scale, init_var=self.config.init_var)
        (directory / "config.json").write_text(json.dumps(config, indent=2))
        meta = json.loads((directory / "meta.json").read_text())
        meta["privacy"] = self.privacy_
        (directory / "meta.json").write_text(json.dumps(meta, indent=2, default=str))

    @classmethod
    def load(cls, directory: Path, *, device: torch.device | str = "cpu") -> Self:
        model = GaussianMixture.load.__func__(cls, directory, device=device)
        config = json.loads((Path(directory) / "config.json").read_text())
        model.config = config_from_dict(DPGMMConfig, config)
        model.privacy_ = json.loads((Path(directory) / "meta.json").read_text()).get("privacy", {})
        return model


def _project_psd(cov: Tensor, floor: float) -> Tensor:
    """Nearest symmetric matrices with eigenvalues >= floor: (k, d, d) -> (k, d, d)."""
    if cov.shape[-1] == 0:
        return cov
    sym = (cov + cov.transpose(-1, -2)) / 2
    vals, vecs = torch.linalg.eigh(sym)
    return vecs @ torch.diag_embed(vals.clamp_min(floor)) @ vecs.transpose(-1, -2)
