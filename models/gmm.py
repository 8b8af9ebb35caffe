"""Gaussian mixture for mixed tables, fitted with EM in PyTorch.

Continuous dimensions get a full-covariance Gaussian per component; categorical spans (one-hot) and missing
indicators get a categorical / Bernoulli distribution per component. This is a latent-class mixture: the component is
the shared cause of both the numbers and the categories, which is how the categories keep their joint structure with
the numbers (a Gaussian fitted to one-hot columns and decoded by argmax would also work, but wastes covariance
parameters on 0/1 columns and cannot condition exactly on a category). Without spans every dimension is continuous and
this is the classic full-covariance GMM.

The continuous means also shift with the row's categories and missing flags (`regress_on_levels`, on by default;
below `AUTO_REGRESS_ROWS` rows the BIC search runs without them and they join at the final refit):
x | component k, levels c ~ N(mu_k + B onehot(c), S_k), a conditional-Gaussian mixture (Lauritzen & Wermuth 1989,
"Graphical models for associations between variables, some of which are qualitative and some quantitative") whose
level shifts B are shared by the components. The shifts reproduce additive category effects (species moving bill
length, a segment moving income) that a plain latent-class mixture needs one component per category combination for
(docs/decisions.md#gmm-level-shifts). Shifts per component were tried first: BIC then prices every component at
d_c x levels more parameters and buys too few of them. B is refitted in every M-step by ridge least squares of x
minus the component means on the one-hots (`ridge` pseudo-rows shrink the shift of a rarely seen level), an ECM step
(Meng & Rubin 1993); the normal equations' Cholesky factor is computed once per fit.

The EM skeleton follows scikit-learn's `BaseMixture` (`_initialize`, `_e_step`, `_m_step`, best of `n_init` restarts by
lower bound, a warning when not converged); the Gaussian maths are module-level functions in log space on precision
Cholesky factors with `reg_covar` on the diagonal (Bishop, PRML 9.2). The number of components is chosen by BIC
(Schwarz 1978) when not given.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import torch
from torch import Tensor

from synthgate.models import base
from synthgate.models.encoders.table import Span
from synthgate.models.gmm_math import (
    MixtureLayout,
    PreparedRows,
    draw_levels,
    gaussian_log_prob,
    group_onehot,
    precision_cholesky,
    weighted_covariances,
)
from synthgate.models.training import Progress
from synthgate.schemas.errors import InvalidInputError

if TYPE_CHECKING:
    from synthgate.models.scoring import RowScores

logger = logging.getLogger(__name__)


# Below this many rows the shared shifts and the components compete for the same signal and BIC starves the components
# that carry the categories' joint, so the search runs without the shifts and they join at the refit:
# docs/decisions.md#gmm-level-shifts.
AUTO_REGRESS_ROWS = 2_000


class ConvergenceWarning(UserWarning):
    """EM stopped at `max_iter` before the lower bound settled."""


@dataclass(frozen=True)
class GMMConfig:
    n_components: int | None = None  # None: choose by BIC in 1..max_components
    max_components: int = 12
    max_iter: int = 200
    tol: float = 1e-4  # on the change of the mean log-likelihood per row
    reg_covar: float = 1e-3  # added to covariance diagonals; the encoder standardises values, so this is relative
    cat_smoothing: float = 0.1  # pseudo-count per category level: no level gets probability exactly 0
    n_init: int = 1
    kmeans_iter: int = 10
    selection_rows: int = 5_000  # BIC search runs on at most this many rows, then the winner is refitted on all
    # The search compares candidates whose BICs differ by hundreds: it stops EM at `tol * search_tol_factor`, and the
    # winner is then refitted from its own parameters to `tol` (docs/decisions.md#gmm-search-tolerance).
    search_tol_factor: float = 30.0
    seed: int = 0  # seeds initialisation only; sampling randomness comes from the caller's generator
    # Continuous means shift with each row's levels (conditional-Gaussian mixture); None: on, and in the BIC search
    # too from AUTO_REGRESS_ROWS rows; False: a plain latent-class mixture.
    regress_on_levels: bool | None = None
    ridge: float = 1.0  # shrinkage of those shifts, in pseudo-rows: a level seen a few times moves the mean little
    condition_pool: int = 20  # candidate draws per row when conditioning on continuous values (importance resampling)


class GaussianMixture:
    """Mixed-type Gaussian mixture fitted with EM.

    Args:
        config: hyperparameters; `GMMConfig()` chooses the number of components by BIC.
        spans: the encoder's spans; softmax/sigmoid spans are modelled as categorical/Bernoulli per component.
        device: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".

    Attributes:
        weights_: (k,) mixing weights.
        means_: (k, d_c) means of the continuous dimensions.
        covariances_: (k, d_c, d_c) covariances.
        level_probs_: per categorical group, (k, levels) probabilities.
        n_components_: the number of components used.
        bic_: BIC per candidate number of components tried.
        converged_, n_iter_, lower_bound_: EM diagnostics of the final fit.
        n_features_in_: width of the encoded input.
        device_: where the fitted tensors live (sampling generators must be on it).
    """

    config_class: ClassVar[type] = GMMConfig
    supports_conditions: ClassVar[bool] = True

    def __init__(self, config: GMMConfig | None = None, *, spans: list[Span] | None = None, device: Any = None):
        self.config = config or GMMConfig()
        self.spans = spans
        self.device = device
        self.n_features_in_: int | None = None

    # -------------------------------------------------------------------------------------------------- fitting
    def fit(self, x: Tensor, *, conditions: Tensor | None = None, progress: Callable[..., None] | None = None) -> Self:
        """Fit by EM; with `n_components=None` pick the component count by BIC on (a subsample of) `x`, calling
        `progress` after each count tried (raising from it stops the fit)."""
        cfg = self.config
        device = base.resolve_device(self.device)
        x = base.to_device(base.check_matrix(x), device, torch.float64)  # (n, d); float64: EM sums many small terms
        n, d = x.shape
        self._fit_rows = n
        layout = MixtureLayout.from_spans(self.spans, d, device)
        gen = base.make_generator(cfg.seed, device)
        if cfg.n_components is not None:
            if not 1 <= cfg.n_components <= n:
                raise InvalidInputError(f"n_components must be between 1 and the number of rows ({n})")
            best = self._fit_k(x, layout, cfg.n_components, gen, shifts=self._regresses())
            self.bic_ = {cfg.n_components: self._bic(best, x.shape[0], layout)}
        else:
            sub = x
            if n > cfg.selection_rows:
                sub = x[torch.randperm(n, generator=gen, device=device)[: cfg.selection_rows]]
            bics: dict[int, float] = {}
            best, worse_in_a_row = None, 0
            search_start = step_start = time.perf_counter()
            max_k = min(cfg.max_components, max(1, sub.shape[0] // 10))
            for k in range(1, max_k + 1):
                try:
                    tol = cfg.tol * cfg.search_tol_factor
                    params = self._fit_k(sub, layout, k, gen, shifts=self._regresses_in_search(), tol=tol)
                except InvalidInputError:
                    break
                bics[k] = self._bic(params, sub.shape[0], layout)
                logger.info("gmm: k=%d BIC=%.1f (%d EM iterations)", k, bics[k], params["n_iter"])
                if progress is not None:  # once per count, with the next count's estimated cost: a budget can stop here
                    now = time.perf_counter()
                    next_s = (now - step_start) * (k + 1) / k if k < max_k else 0.0  # EM's cost grows with k
                    rate = sub.shape[0] * k / max(now - search_start, 1e-9)
                    progress(Progress(k, max_k, bics[k] / sub.shape[0], None, rate, next_s))
                    step_start = now
                if best is None or bics[k] < min(v for kk, v in bics.items() if kk != k):
                    best, worse_in_a_row = params, 0
                else:
                    worse_in_a_row += 1
                    if worse_in_a_row >= 2:  # BIC is rising: larger k only overfits
                        break
            # Refit on every row to the full tolerance, starting from the search's winner (far fewer EM iterations);
            # below AUTO_REGRESS_ROWS the shifts join here, on top of the components the plain search chose.
            best = self._fit_k(x, layout, best["weights"].shape[0], gen, shifts=self._regresses(), start=best)
            self.bic_ = bics
        self._set_params(best, layout, d)
        logger.info(
            "gmm: fitted %d components on %d rows x %d features (%d EM iterations)",
            self.n_components_,
            n,
            d,
            best["n_iter"],
        )
        return self

    def _fit_k(
        self,
        x: Tensor,
        layout: MixtureLayout,
        k: int,
        gen: torch.Generator,
        *,
        shifts: bool,
        start: dict[str, Any] | None = None,
        tol: float | None = None,
    ) -> dict[str, Any]:
        """EM with `k` components: best of `n_init` k-means++ starts, or one run from `start`'s parameters."""
        cfg = self.config
        tol = cfg.tol if tol is None else tol
        # The continuous block and one-hot groups, sliced once for every EM iteration.
        data = PreparedRows.of(x, layout, ridge=self.config.ridge if shifts else None)
        best: dict[str, Any] | None = None
        for _ in range(1 if start is not None else cfg.n_init):
            if start is not None:
                params = {key: start[key] for key in ("weights", "means", "cov", "prec_chol", "level_probs", "coef")}
            else:
                params = self._m_step(data, self._initial_resp(x, k, gen))
            lower_bound, converged, n_iter = -math.inf, False, 0
            while n_iter < cfg.max_iter:
                n_iter += 1
                log_norm, log_resp = self._e_step(data, params)
                params = self._m_step(data, log_resp.exp(), params.get("coef"))
                change = log_norm - lower_bound
                lower_bound = log_norm
                if abs(change) < tol:
                    converged = True
                    break
            params.update(lower_bound=lower_bound, converged=converged, n_iter=n_iter)
            if best is None or lower_bound > best["lower_bound"]:
                best = params
        if not best["converged"]:
            warnings.warn(
                f"EM with {k} components did not converge in {cfg.max_iter} iterations; "
                "increase max_iter or tol, or check the data",
                ConvergenceWarning,
                stacklevel=3,
            )
        return best

    def _regresses(self) -> bool:
        """Whether the fitted means shift with the levels: unless turned off, they do at any size."""
        return self.config.regress_on_levels is not False

    def _regresses_in_search(self) -> bool:
        """Whether the BIC search fits the shifts too; decided on the rows of the whole fit, not a BIC subsample.

        Below `AUTO_REGRESS_ROWS` (by default) it chooses the components without them, so BIC keeps the components
        that carry the categories' joint, and the shifts join when the winner is refitted on every row.
        """
        if self.config.regress_on_levels is not None:
            return self.config.regress_on_levels
        return self._fit_rows >= AUTO_REGRESS_ROWS

    def _initial_resp(self, x: Tensor, k: int, gen: torch.Generator) -> Tensor:
        """Hard responsibilities from k-means++ seeding and a few Lloyd iterations."""
        n = x.shape[0]
        centers = x[torch.randint(n, (1,), generator=gen, device=x.device)]
        for _ in range(1, k):
            dist = torch.cdist(x, centers).min(dim=1).values ** 2
            probs = dist / dist.sum() if dist.sum() > 0 else torch.full_like(dist, 1 / n)
            centers = torch.cat([centers, x[torch.multinomial(probs, 1, generator=gen)]])
        for _ in range(self.config.kmeans_iter):
            labels = torch.cdist(x, centers).argmin(dim=1)
            onehot = torch.nn.functional.one_hot(labels, k).to(x.dtype)  # (n, k)
            counts = onehot.sum(0)
            moved = (onehot.T @ x) / counts.clamp(min=1)[:, None]
            centers = torch.where(counts[:, None] > 0, moved, centers)  # an empty cluster keeps its centre
        labels = torch.cdist(x, centers).argmin(dim=1)
        return torch.nn.functional.one_hot(labels, k).to(x.dtype)

    def _e_step(self, data: PreparedRows, params: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Returns (mean log-likelihood per row, (n, k) log responsibilities)."""
        weighted = self._log_prob_components(data, params) + torch.log(params["weights"])
        log_norm = torch.logsumexp(weighted, dim=1, keepdim=True)  # (n, 1)
        return float(log_norm.mean()), weighted - log_norm

    @staticmethod
    def _log_prob_components(data: PreparedRows, params: dict[str, Any]) -> Tensor:
        """(n, k) log p(x | component): the Gaussian block plus every categorical group in one matmul."""
        log_prob = gaussian_log_prob(data.shifted(params.get("coef")), params["means"], params["prec_chol"])
        if params["level_probs"]:
            log_levels = torch.log(torch.cat(params["level_probs"], dim=1))  # (k, total levels)
            log_prob = log_prob + data.onehot @ log_levels.T
        return log_prob

    def _m_step(self, data: PreparedRows, resp: Tensor, coef: Tensor | None = None) -> dict[str, Any]:
        """Weights, means, covariances and level probabilities; with levels regressed, the shifts too (ECM).

        `coef` is the previous iteration's shifts: the means are taken with them held, the shifts refitted with the
        means held, then the means and covariances recomputed with the new shifts.
        """
        n = resp.shape[0]
        nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps  # (k,)
        if data.gram_chol is not None:
            means = resp.T @ data.shifted(coef) / nk[:, None]  # (k, d_c)
            target = data.onehot.T @ (data.continuous - resp @ means)  # (levels, d_c)
            coef = torch.cholesky_solve(target, data.gram_chol)  # ridge least squares of x - mean on the one-hots
        else:
            coef = None
        values = data.shifted(coef)
        means = resp.T @ values / nk[:, None]  # (k, d_c)
        cov = weighted_covariances(values, resp, nk, means, self.config.reg_covar)
        level_probs = []
        if data.widths:
            counts = resp.T @ data.onehot + self.config.cat_smoothing  # (k, total levels)
            level_probs = [c / c.sum(1, keepdim=True) for c in torch.split(counts, data.widths, dim=1)]
        return {
            "weights": nk / n,
            "means": means,
            "cov": cov,
            "prec_chol": precision_cholesky(cov),
            "level_probs": level_probs,
            "coef": coef,
        }

    def _bic(self, params: dict[str, Any], n: int, layout: MixtureLayout) -> float:
        """BIC = -2 log L + p log n, with p counting weights, means, covariances and level probabilities."""
        k, d_c = params["means"].shape
        n_params = (k - 1) + k * d_c + k * d_c * (d_c + 1) // 2
        n_params += sum(k * (p.shape[1] - 1) for p in params["level_probs"])
        if params.get("coef") is not None:  # shared level shifts: one per free level of each group and dimension
            n_params += d_c * sum(p.shape[1] - 1 for p in params["level_probs"])
        return -2 * params["lower_bound"] * n + n_params * math.log(n)

    def _set_params(self, params: dict[str, Any], layout: MixtureLayout, n_features: int) -> None:
        self.weights_ = params["weights"]
        self.means_ = params["means"]
        self.covariances_ = params["cov"]
        self.precisions_cholesky_ = params["prec_chol"]
        self.level_probs_ = params["level_probs"]
        self.coef_ = params.get("coef")  # (total levels, d_c) shifts shared by the components, or None (plain)
        self.converged_ = params.get("converged", True)
        self.n_iter_ = params.get("n_iter", 0)
        self.lower_bound_ = params.get("lower_bound", float("nan"))
        self.n_components_ = int(self.weights_.shape[0])
        self.layout_ = layout
        self.device_ = self.means_.device
        self.n_features_in_ = n_features

    # ------------------------------------------------------------------------------------------------- sampling
    def score_samples(self, x: Tensor) -> Tensor:
        """(n,) log-likelihood of each encoded row under the mixture."""
        base.require_fitted(self)
        x = base.check_matrix(x).to(self.means_.device, torch.float64)
        data = PreparedRows.of(x, self.layout_)
        weighted = self._log_prob_components(data, self._params()) + torch.log(self.weights_)
        return torch.logsumexp(weighted, dim=1)

    def anomaly_scores(self, x: Tensor) -> RowScores:
        """Per-row negative log-likelihood (exact) and per-feature parts (`models.scoring`)."""
        from synthgate.models.scoring import gmm_scores

        return gmm_scores(self, x)

    def _params(self) -> dict[str, Any]:
        return {
            "weights": self.weights_,
            "means": self.means_,
            "prec_chol": self.precisions_cholesky_,
            "level_probs": self.level_probs_,
            "coef": getattr(self, "coef_", None),
        }

    @torch.no_grad()
    def sample(self, n: int, *, conditions: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw `n` encoded rows; `conditions` (NaN = free) fixes categorical levels or continuous values exactly.

        A conditioned categorical level reweights the components by how likely each makes it; conditioned continuous
        values do the same through their marginal density, and the free continuous dimensions are then drawn from
        each component's Gaussian conditioned on them (Bishop, PRML 2.3.1).
        """
        base.require_fitted(self)
        device = self.means_.device
        gen = generator if generator is not None else base.make_generator(None, device)
        if conditions is None:
            return self._sample_block(n, None, gen)
        conditions = torch.as_tensor(conditions, dtype=torch.float64, device=device)
        if conditions.ndim == 1:
            return self._sample_block(n, conditions, gen)
        if conditions.shape[0] != n:
            raise InvalidInputError(f"conditions has {conditions.shape[0]} rows but {n} samples were asked for")
        out = torch.empty(n, self.n_features_in_, dtype=torch.float32, device=device)
        rows, inverse = torch.unique(torch.nan_to_num(conditions, nan=math.inf), dim=0, return_inverse=True)
        for i, row in enumerate(rows):
            mask = inverse == i
            row = torch.where(torch.isinf(row), torch.nan, row)
            out[mask] = self._sample_block(int(mask.sum()), row, gen)
        return out

    def _sample_block(self, n: int, condition: Tensor | None, gen: torch.Generator) -> Tensor:
        """`n` encoded rows sharing one condition row (NaN = free) or none."""
        device, layout = self.means_.device, self.layout_
        d = self.n_features_in_
        log_w = torch.log(self.weights_).clone()  # (k,)
        fixed = torch.zeros(d, dtype=torch.bool, device=device)
        if condition is not None:
            if condition.shape[0] != d:
                raise InvalidInputError(
                    f"a condition must have {d} entries (NaN for free ones), got {condition.shape[0]}"
                )
            fixed = ~torch.isnan(condition)
            for idx, is_binary, probs in zip(layout.groups, layout.binary, self.level_probs_, strict=True):
                if fixed[idx].any():
                    log_w = log_w + (self._condition_onehot(condition, idx, is_binary) @ torch.log(probs).T)[0]
        cont = layout.continuous
        cont_fixed = fixed[cont]
        regressed = getattr(self, "coef_", None) is not None
        if regressed and bool(cont_fixed.any()):
            # Values fixed: p(component, levels | values) has no closed form once means depend on levels, so draw
            # a pool from the prior and resample it by the density of the fixed values (importance resampling).
            pool = min(max(n * self.config.condition_pool, 1_000), 1 << 24)  # multinomial's limit
            comp, onehot = self._draw_structure(pool, log_w, condition, fixed, gen)
            centre = self._centres(comp, onehot)  # (pool, d_c)
            b = cont_fixed
            xb = condition[cont][b]
            log_density = torch.empty(pool, dtype=torch.float64, device=device)
            for j in range(self.n_components_):  # log N(x_b | centre_b, cov_bb) of each candidate
                rows = comp == j
                prec_bb = precision_cholesky(self.covariances_[j][b][:, b])[None]  # (1, d_b, d_b)
                residual = xb[None, :] - centre[rows][:, b]  # (n_j, d_b)
                log_density[rows] = gaussian_log_prob(residual, torch.zeros_like(xb)[None, :], prec_bb)[:, 0]
            pick = torch.multinomial(torch.softmax(log_density, 0), n, replacement=True, generator=gen)
            comp, onehot, centre = comp[pick], onehot[pick], centre[pick]
        else:
            if bool(cont_fixed.any()):  # plain mixture: reweight components by the fixed values' marginal density
                b = cont_fixed
                prec_bb = precision_cholesky(self.covariances_[:, b][:, :, b])
                log_w = log_w + gaussian_log_prob(condition[cont][b][None, :], self.means_[:, b], prec_bb)[0]
            comp, onehot = self._draw_structure(n, log_w, condition, fixed, gen)
            centre = self._centres(comp, onehot)
        out = torch.zeros(n, d, dtype=torch.float64, device=device)
        if len(cont):
            out[:, cont] = self._draw_values(comp, centre, condition, cont_fixed, gen)
        for idx, is_binary, block in zip(layout.groups, layout.binary, self._split_onehot(onehot), strict=True):
            out[:, idx] = block[:, 1:] if is_binary else block
        if condition is not None and bool(fixed.any()):
            out[:, fixed] = condition[fixed]
        return out.float()

    def _condition_onehot(self, condition: Tensor, idx: Tensor, is_binary: bool) -> Tensor:
        """(1, levels) one-hot of one categorical group fixed by `condition`."""
        return group_onehot(condition[None, :].nan_to_num(0), MixtureLayout(idx[:0], [idx], [is_binary]))[0]

    def _split_onehot(self, onehot: Tensor) -> list[Tensor]:
        return list(torch.split(onehot, [p.shape[1] for p in self.level_probs_], dim=1)) if self.level_probs_ else []

    def _draw_structure(
        self, n: int, log_w: Tensor, condition: Tensor | None, fixed: Tensor, gen: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Components (n,) from `log_w` and each group's level given its component, fixed groups kept: (n, levels)."""
        comp = torch.multinomial(torch.softmax(log_w, 0), n, replacement=True, generator=gen)  # (n,)
        blocks = []
        for idx, is_binary, probs in zip(self.layout_.groups, self.layout_.binary, self.level_probs_, strict=True):
            if condition is not None and bool(fixed[idx].any()):
                blocks.append(self._condition_onehot(condition, idx, is_binary).expand(n, -1))
            else:
                level = draw_levels(probs, comp, gen)  # (n,)
                blocks.append(torch.nn.functional.one_hot(level, probs.shape[1]).to(torch.float64))
        onehot = torch.cat(blocks, dim=1) if blocks else torch.zeros(n, 0, dtype=torch.float64, device=comp.device)
        return comp, onehot

    def _centres(self, comp: Tensor, onehot: Tensor) -> Tensor:
        """(n, d_c) mean of each row's continuous values: its component's mean, shifted by its levels if regressed."""
        centre = self.means_[comp]  # (n, d_c)
        return centre if getattr(self, "coef_", None) is None else centre + onehot @ self.coef_

    def _draw_values(
        self, comp: Tensor, centre: Tensor, condition: Tensor | None, cont_fixed: Tensor, gen: torch.Generator
    ) -> Tensor:
        """Continuous values (n, d_c) around per-row centres; fixed values condition the free ones (PRML 2.3.1)."""
        n = centre.shape[0]
        out = centre.clone()
        cov = self.covariances_
        a, b = ~cont_fixed, cont_fixed
        if bool(b.any()):
            xb = condition[self.layout_.continuous][b]
            gain = cov[:, a][:, :, b] @ torch.linalg.inv(cov[:, b][:, :, b])  # (k, d_a, d_b)
            cov = cov[:, a][:, :, a] - gain @ cov[:, b][:, :, a]
        chol = torch.linalg.cholesky(cov + 1e-9 * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device))
        z = torch.randn(n, chol.shape[-1], dtype=torch.float64, device=centre.device, generator=gen)
        free = torch.empty(n, chol.shape[-1], dtype=torch.float64, device=centre.device)
        for j in range(chol.shape[0]):  # per component one (n_j, d) @ (d, d) product, not an (n, d, d) gather
            rows = comp == j
            mean = centre[rows][:, a]
            if bool(b.any()):
                mean = mean + (xb - centre[rows][:, b]) @ gain[j].T
            free[rows] = mean + z[rows] @ chol[j].T
        out[:, a] = free
        if bool(b.any()):
            out[:, b] = xb
        return out

    # ---------------------------------------------------------------------------------------------- persistence
    def save(self, directory: Path) -> None:
        base.require_fitted(self)
        state = {
            "weights": self.weights_,
            "means": self.means_,
            "covariances": self.covariances_,
            **{f"level_probs.{i}": p for i, p in enumerate(self.level_probs_)},
            **({"coef": self.coef_} if getattr(self, "coef_", None) is not None else {}),
        }
        spans = [vars(s) for s in self.spans] if self.spans else None
        meta = {"n_features_in": self.n_features_in_, "spans": spans, "bic": self.bic_, "converged": self.converged_}
        base.save_checkpoint(directory, kind="gmm", config=self.config, state=state, meta=meta)

    @classmethod
    def load(cls, directory: Path, *, device: torch.device | str = "cpu") -> Self:
        config, state, meta = base.load_checkpoint(directory, device=device)
        spans = [Span(**s) for s in meta["spans"]] if meta["spans"] else None
        model = cls(base.config_from_dict(GMMConfig, config), spans=spans, device=device)
        layout = MixtureLayout.from_spans(spans, meta["n_features_in"], torch.device(device))
        n_groups = len(layout.groups)
        params = {
            "weights": state["weights"],
            "means": state["means"],
            "cov": state["covariances"],
            "prec_chol": precision_cholesky(state["covariances"]),
            "level_probs": [state[f"level_probs.{i}"] for i in range(n_groups)],
            "coef": state.get("coef"),
            "converged": meta["converged"],
        }
        model._set_params(params, layout, meta["n_features_in"])
        model.bic_ = {int(k): v for k, v in meta["bic"].items()}
        return model
