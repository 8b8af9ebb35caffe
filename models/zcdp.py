"""A zero-concentrated DP accountant for mechanisms that release noisy counts and make noisy choices.

zCDP (Bun & Steinke 2016) composes by adding rho, which is what select-measure-generate methods need: many small
Gaussian measurements and exponential-mechanism choices, each a rho share of one budget (McKenna et al. 2021, MST;
2022, AIM). The pieces:

- a Gaussian mechanism with L2 sensitivity s and noise sigma is (s^2 / (2 sigma^2))-zCDP;
- an exponential mechanism that is eps0-DP is (eps0^2 / 8)-zCDP (Cesar & Rogers 2021, bounded range);
- rho-zCDP is (alpha, alpha rho)-RDP for every order alpha, the RDP curve of a Gaussian mechanism with noise
  multiplier 1 / sqrt(2 rho), so (epsilon, delta) comes from `models.privacy.gaussian_epsilon`, the same conversion
  the DP-EM gmm uses; and the budget from `gaussian_sigma`.

A mechanism asks for its share before it reads the rows; `spend` refuses any share beyond the budget (a programming
error, never a data-dependent event), so the spent epsilon can never exceed the request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from synthgate.models.privacy import gaussian_epsilon, gaussian_sigma


def rho_for(epsilon: float, delta: float) -> float:
    """The largest rho whose (epsilon, delta) conversion stays within `epsilon` at `delta`."""
    return 1.0 / (2.0 * gaussian_sigma(epsilon, delta) ** 2)


def epsilon_of(rho: float, delta: float) -> float:
    """Epsilon at `delta` of a rho-zCDP release; 0 for rho = 0."""
    return 0.0 if rho <= 0 else gaussian_epsilon(1.0 / math.sqrt(2.0 * rho), delta)


@dataclass
class ZCDPAccountant:
    """A rho budget, the noisy releases made against it, and what each cost.

    With `rho` infinite (no privacy requested) every mechanism is exact: no noise, the best choice.

    Attributes:
        rho: the whole budget.
        spent: rho used so far.
        ledger: (what, rho) of every release, in order.
    """

    rho: float
    rng: np.random.Generator
    spent: float = 0.0
    ledger: list[tuple[str, float]] = field(default_factory=list)

    @property
    def private(self) -> bool:
        return math.isfinite(self.rho)

    @property
    def left(self) -> float:
        return self.rho - self.spent

    def spend(self, rho: float, what: str) -> None:
        """Charge `rho` for `what`; refuses to overdraw (a relative slack of 1e-9 absorbs float sums)."""
        if not self.private:
            return
        if rho <= 0 or self.spent + rho > self.rho * (1 + 1e-9):
            raise ValueError(f"zCDP budget overdrawn by {what}: {self.spent:.6g} + {rho:.6g} > {self.rho:.6g}")
        self.spent += rho
        self.ledger.append((what, rho))

    @staticmethod
    def sigma(rho: float, sensitivity: float = 1.0) -> float:
        """Gaussian noise sigma that makes a release of L2 sensitivity `sensitivity` rho-zCDP."""
        return 0.0 if not math.isfinite(rho) else sensitivity / math.sqrt(2.0 * rho)

    def gaussian(self, values: np.ndarray, rho: float, what: str, sensitivity: float = 1.0) -> np.ndarray:
        """`values` plus Gaussian noise calibrated to `rho` (exact values when the budget is infinite)."""
        values = np.asarray(values, dtype=np.float64)
        if not self.private:
            return values.copy()
        self.spend(rho, what)
        return values + self.rng.normal(0.0, self.sigma(rho, sensitivity), values.shape)

    def exponential(self, quality: np.ndarray, rho: float, what: str, sensitivity: float = 1.0) -> int:
        """Index chosen with probability proportional to exp(eps0 q / (2 sensitivity)), eps0 = sqrt(8 rho)."""
        quality = np.asarray(quality, dtype=np.float64)
        if not self.private:
            return int(np.argmax(quality))
        self.spend(rho, what)
        eps0 = math.sqrt(8.0 * rho)
        logits = eps0 * (quality - quality.max()) / (2.0 * sensitivity)
        p = np.exp(logits)
        return int(self.rng.choice(quality.size, p=p / p.sum()))

    def epsilon(self, delta: float) -> float:
        """Epsilon spent so far, at `delta`."""
        return epsilon_of(self.spent, delta) if self.private else math.inf
