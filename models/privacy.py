"""Differentially private training (DP-SGD) through Opacus: one entry, `make_private`, one returned object.

DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy") bounds what one training row can do to the model:
each step samples a batch with Poisson sampling (every row independently with probability q = batch_size / n), clips
every per-sample gradient to L2 norm `max_grad_norm`, sums them and adds Gaussian noise of standard deviation
`noise_multiplier * max_grad_norm`. The privacy cost of the whole run is tracked by a Renyi-DP accountant (Mironov 2017,
"Renyi Differential Privacy"; the subsampled Gaussian bound of Mironov, Talwar & Zhang 2019) and converted to
(epsilon, delta). The noise multiplier is solved up front from the target epsilon, delta, epochs and q, so a run that
does the planned number of steps spends at most the target.

Opacus does the per-sample gradients (hooks on Linear/LayerNorm layers), the clipping, the noise and the accounting;
this module only picks safe defaults and returns one named object instead of Opacus's tuple (see STYLE.md).

Networks trained this way must not use BatchNorm (it mixes rows, so a per-sample gradient is not per sample), and no
quantity fitted on the private rows may bypass the mechanism: early stopping on a validation split of the same rows,
training-by-sampling weights from category counts or a gradient penalty on real rows would each leak around it.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from synthgate.schemas.errors import InvalidInputError

logger = logging.getLogger(__name__)

# Per-sample gradient clipping bound C. With mean-reduced losses of order 1, gradients of order 1 are typical; the noise
# scales with C, so a smaller C trades bias (more clipping) for less noise. 1.0 is Opacus's and Abadi et al.'s choice.
DEFAULT_MAX_GRAD_NORM = 1.0
# The accountant: "rdp" (Mironov 2017) is the classic, slightly conservative bound; Opacus's "prv" is tighter.
ACCOUNTANT = "rdp"


def default_delta(n_rows: int) -> float:
    """The default delta: 1 / (10 n), well below 1 / n.

    Delta is the probability that the epsilon guarantee fails outright; at delta >= 1/n a mechanism that publishes one
    random row verbatim would be (0, delta)-DP, so delta must be much smaller than 1/n (Dwork & Roth 2014, sec. 2.3).
    """
    return 1.0 / (10.0 * max(int(n_rows), 1))


def check_budget(epsilon: float, delta: float, n_rows: int) -> None:
    """Refuse budgets that promise nothing (delta at or above 1/n) or that are not positive.

    Raises:
        InvalidInputError: the budget is not meaningful for `n_rows` rows.
    """
    if not epsilon > 0:
        raise InvalidInputError(f"epsilon must be positive, got {epsilon}")
    if not 0 < delta < 1.0 / max(n_rows, 1):
        raise InvalidInputError(
            f"delta={delta:g} must be positive and below 1/n = {1.0 / max(n_rows, 1):.3g} for {n_rows} training rows "
            f"(at delta >= 1/n, publishing a real row verbatim is allowed); leave it out for the default 1/(10 n) = "
            f"{default_delta(n_rows):.3g}"
        )


@dataclass
class PrivateTraining:
    """A module, optimizer and Poisson loader that together do DP-SGD, and the engine that accounts for it.

    Train with `module` (forward passes record per-sample gradients), `optimizer` (its `step` clips, adds noise and
    advances the accountant) and `batches(n)` (index tensors of Poisson-sampled batches), then call `detach` to get the
    plain network back.

    Attributes:
        module: the network wrapped in Opacus's `GradSampleModule`.
        optimizer: Opacus's `DPOptimizer` around the caller's optimizer.
        loader: the Poisson-sampling `DPDataLoader` over row indices.
        engine: the `PrivacyEngine` holding the accountant.
        epsilon: the target epsilon the noise was calibrated to.
        delta: the delta epsilon is reported at.
        noise_multiplier: sigma, noise standard deviation per unit of clipping bound.
        max_grad_norm: the per-sample clipping bound C.
        sample_rate: q, the probability that a row is in a batch.
        epochs: the planned number of passes.
    """

    module: nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    engine: object
    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    epochs: int
    skipped_steps: int = 0
    schedule: list[float] | None = None  # one noise multiplier per epoch (`noise_schedule`); None: constant
    epochs_started: int = 0

    def spent_epsilon(self) -> float:
        """Epsilon spent so far at `delta`, from the accountant's record of every noisy step taken."""
        if not self.engine.accountant.history:
            return 0.0
        return float(self.engine.get_epsilon(self.delta))

    def batches(self, min_rows: int = 1) -> Iterator[Tensor]:
        """One epoch of Poisson-sampled batches of row indices.

        A batch smaller than `min_rows` (empty, or too small for a PacGAN pack) is skipped without a model update, but
        the accountant is still charged for it, so the reported epsilon never undercounts. Skipping only removes rows
        from a step, which cannot raise any row's influence.
        """
        if self.schedule is not None:  # this epoch's sigma; the accountant reads it from the optimizer each step
            self.noise_multiplier = self.schedule[min(self.epochs_started, len(self.schedule) - 1)]
            self.optimizer.noise_multiplier = self.noise_multiplier
        self.epochs_started += 1
        for (idx,) in self.loader:
            if idx.shape[0] < min_rows:
                self.engine.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
                self.skipped_steps += 1
                continue
            yield idx

    def detach(self) -> nn.Module:
        """Remove Opacus's hooks and return the plain trained network."""
        inner = self.module._module
        self.module._close()
        return inner

    def report(self) -> dict[str, float | int | str]:
        """What the fit report and the output metadata say about the run's privacy."""
        return {
            "epsilon": round(self.spent_epsilon(), 4),
            "delta": self.delta,
            "target_epsilon": self.epsilon,
            "noise_multiplier": round(self.noise_multiplier, 4),
            "max_grad_norm": self.max_grad_norm,
            "sample_rate": round(self.sample_rate, 6),
            "steps": _n_steps(self.engine),
            "skipped_steps": self.skipped_steps,
            "accountant": ACCOUNTANT,
        }


def _n_steps(engine: object) -> int:
    return int(sum(steps for _, _, steps in engine.accountant.history))


def index_loader(n_rows: int, batch_size: int) -> DataLoader:
    """A loader over row indices 0..n-1; `make_private` turns it into Poisson sampling with q = batch_size / n."""
    return DataLoader(TensorDataset(torch.arange(n_rows)), batch_size=max(1, min(batch_size, n_rows)))


def make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    *,
    epsilon: float,
    delta: float,
    epochs: int,
    max_grad_norm: float = DEFAULT_MAX_GRAD_NORM,
    noise_generator: torch.Generator | None = None,
    noise_decay: float = 1.0,
) -> PrivateTraining:
    """Make `model`, `optimizer` and `loader` do DP-SGD that spends at most (`epsilon`, `delta`) over `epochs`.

    Args:
        model: the network whose parameters `optimizer` updates; LayerNorm/GroupNorm only, never BatchNorm.
        optimizer: an optimizer over `model`'s parameters (Adam is fine: DP-SGD's guarantee covers any update rule
            that sees only the noisy gradient).
        loader: batches of the private rows (or of their indices, see `index_loader`); replaced by Poisson sampling.
        epsilon: the target budget; the noise multiplier is solved so that `epochs` passes spend no more.
        delta: failure probability; keep it below 1/n (`default_delta`).
        epochs: the planned passes; training must not run longer (the caller stops at `epochs`).
        max_grad_norm: per-sample clipping bound C.
        noise_generator: source of the Gaussian noise (None: the global RNG, which the models seed during fit).
        noise_decay: the last epoch's noise multiplier over the first's (1: constant); see `noise_schedule`.

    Returns:
        A `PrivateTraining` with the wrapped module, optimizer, loader and engine.

    Raises:
        InvalidInputError: a meaningless budget, or a network Opacus cannot make private (it names the layer).
    """
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    n_rows = len(loader.dataset)
    check_budget(epsilon, delta, n_rows)
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise InvalidInputError(f"this network cannot be trained with DP-SGD: {errors}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")  # seeded runs are the point; see README
        engine = PrivacyEngine(accountant=ACCOUNTANT)
        module, dp_optimizer, dp_loader = engine.make_private_with_epsilon(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            target_epsilon=epsilon,
            target_delta=delta,
            epochs=epochs,
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
            noise_generator=noise_generator,
        )
    sample_rate = 1.0 / len(dp_loader)
    schedule = None
    if noise_decay != 1.0:
        schedule = noise_schedule(
            epsilon, delta, sample_rate, len(dp_loader), epochs, decay=noise_decay,
            constant=float(dp_optimizer.noise_multiplier),
        )  # fmt: skip
        dp_optimizer.noise_multiplier = schedule[0]
    private = PrivateTraining(
        module=module,
        optimizer=dp_optimizer,
        loader=dp_loader,
        engine=engine,
        epsilon=epsilon,
        delta=delta,
        noise_multiplier=float(dp_optimizer.noise_multiplier),
        max_grad_norm=max_grad_norm,
        sample_rate=sample_rate,
        epochs=epochs,
        schedule=schedule,
    )
    logger.info(
        "privacy: DP-SGD for (%.3g, %.2g)-DP over %d epochs: q=%.4f, sigma=%.3f, C=%.2f",
        epsilon,
        delta,
        epochs,
        sample_rate,
        private.noise_multiplier,
        max_grad_norm,
    )
    return private


def rdp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon of `steps` subsampled Gaussian steps, computed independently of any engine (Mironov 2017).

    Used to check the accountant and to plan budgets: the same RDP orders and conversion as Opacus's `RDPAccountant`.
    """
    from opacus.accountants.analysis import rdp as rdp_analysis

    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    rdp = rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=orders)
    eps, _ = rdp_analysis.get_privacy_spent(orders=orders, rdp=rdp, delta=delta)
    return float(eps)


def schedule_epsilon(multipliers: list[float], sample_rate: float, steps_per_epoch: int, delta: float) -> float:
    """Epsilon of epochs of `steps_per_epoch` subsampled Gaussian steps, epoch e at noise multiplier `multipliers[e]`.

    RDP composes by addition at each order (Mironov 2017, Prop. 1), so a schedule is accounted as the engine does
    when the optimizer's multiplier changes between steps. Integer orders only: their RDP has a closed form (fifty
    times faster than the fractional ones), and leaving orders out can only raise the bound, never undercount.
    """
    from opacus.accountants.analysis import rdp as rdp_analysis

    orders = list(range(2, 64))
    rdp = sum(
        rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=z, steps=steps_per_epoch, orders=orders)
        for z in multipliers
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Optimal order.*")
        eps, _ = rdp_analysis.get_privacy_spent(orders=orders, rdp=rdp, delta=delta)
    return float(eps)


def noise_schedule(
    epsilon: float,
    delta: float,
    sample_rate: float,
    steps_per_epoch: int,
    epochs: int,
    *,
    decay: float,
    constant: float | None = None,
) -> list[float]:
    """Noise multipliers per epoch, geometric from the first to `decay` times it, scaled so the run spends `epsilon`.

    Early steps move far from a random start and tolerate noise; late steps refine and are hurt by it, so spending
    more of the budget late can pay (Lee & Kifer 2018, "Concentrated Differentially Private Gradient Descent with
    Adaptive per-Iteration Privacy Budget"; Yu et al. 2019, "Differentially Private Model Publishing for Deep
    Learning"). The scale is bisected on `schedule_epsilon`, rounding up, so the schedule never spends more than asked.

    Args:
        constant: the constant multiplier that spends `epsilon` over the same steps, when known: the schedule's
            scale lies within a factor `decay` of it, a narrow bracket that needs a third of the bisection steps.
    """
    shape = [decay ** (e / max(epochs - 1, 1)) for e in range(epochs)]

    def spends(scale: float) -> float:
        return schedule_epsilon([scale * w for w in shape], sample_rate, steps_per_epoch, delta)

    lo, hi, steps = 1e-2, 1e3, 40  # the scale of the first epoch's multiplier
    if constant is not None:
        lo, hi, steps = constant / max(shape) / 1.5, constant / min(shape) * 1.5, 20
        while spends(hi) > epsilon:  # never expected: integer orders cost at most a few per cent of sigma
            hi *= 2
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        if spends(mid) > epsilon:
            lo = mid
        else:
            hi = mid
    return [hi * w for w in shape]


def gaussian_epsilon(noise_multiplier: float, delta: float) -> float:
    """Epsilon at `delta` of a Gaussian mechanism whose noise is `noise_multiplier` times its L2 sensitivity.

    The mechanism is (alpha, alpha / (2 z^2))-RDP for every order alpha (Mironov 2017, Prop. 7). Composing Gaussian
    mechanisms with multipliers z_1..z_m is the same as one with 1 / z^2 = sum 1 / z_j^2 (RDP adds up), which is how
    `models.gmm_dp` accounts for its EM iterations.
    """
    from opacus.accountants.analysis import rdp as rdp_analysis

    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 256))
    rdp = [a / (2 * noise_multiplier**2) for a in orders]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Optimal order.*")
        eps, _ = rdp_analysis.get_privacy_spent(orders=orders, rdp=rdp, delta=delta)
    return float(eps)


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """Noise standard deviation that makes one Gaussian mechanism release (epsilon, delta)-DP, via RDP.

    A Gaussian mechanism with L2 sensitivity s and noise sigma is (alpha, alpha s^2 / (2 sigma^2))-RDP for every order
    alpha (Mironov 2017, Prop. 7); converting to (epsilon, delta) and bisecting on sigma gives a tighter sigma than the
    classical sqrt(2 ln(1.25/delta)) / epsilon bound, and one that stays valid for epsilon > 1.
    """
    lo, hi = 1e-3, 1e4  # bisection on the noise multiplier z = sigma / s
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        if gaussian_epsilon(mid, delta) > epsilon:
            lo = mid
        else:
            hi = mid
    return hi * sensitivity
