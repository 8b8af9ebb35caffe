"""One column's domain for the marginal family, measured under zCDP: fine tokens for values, coarse tokens for the model.

A graphical model over noisy marginals needs small domains (a 2-way table of 32 x 32 cells already spreads a few
thousand rows thin against the noise), while the published column needs fine detail (a value drawn uniformly in one of
16 wide bins is visibly binned, and a detection classifier finds it at once). So each column gets two levels:

- fine tokens (`models.arn_tokens.ColumnTokens`): missing, exact heaped values ("spikes"), and narrow bins. Numbers
  start from `fine_bins` equal-width bins over the column's bounds (public: the DP encoder maps them to +-2), and
  every bin whose noisy count can carry it is split into `branching` children, `levels` times: a hierarchical
  histogram that is fine where the rows are and coarse where they are not (the adaptive refinement of Qardaji et al.
  2013 and Zhang et al. 2016). Each level is one Gaussian release of sensitivity 1 (a row falls in one bin per level),
  children are made consistent with their parent top-down (post-processing). Spikes are exact values whose noisy count
  clears a threshold that a value held by one row passes with probability below the column's delta share (the
  unknown-domain histogram of Korolova et al. 2009), so the values themselves are released safely.
- coarse tokens: missing, each spike, and up to `k` groups of consecutive fine bins of equal estimated mass (quantile
  bins of the noisy histogram: DP-aware binning at no extra cost). The graphical model works on these; a sampled
  coarse token is refined to a fine token in proportion to the fine masses, and then to a value within the bin.

Categories are their own fine and coarse tokens; their noisy counts are measured once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from synthgate.models.arn_tokens import ColumnTokens
from synthgate.models.zcdp import ZCDPAccountant


@dataclass
class ColumnDomain:
    """A column's fine tokens, their estimated row counts and the coarse group of each.

    Attributes:
        tokens: the fine tokens (`ColumnTokens`: categories as levels; numbers as missing, spikes, bins).
        mass: (n_fine,) estimated rows per fine token, non-negative.
        coarse: (n_fine,) coarse group of each fine token.
    """

    tokens: ColumnTokens
    mass: np.ndarray
    coarse: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_coarse(self) -> int:
        return int(self.coarse.max()) + 1 if self.coarse.size else 1

    def coarse_mass(self) -> np.ndarray:
        return np.bincount(self.coarse, weights=self.mass, minlength=self.n_coarse)

    def state(self) -> dict:
        return {"mass": self.mass.tolist(), "coarse": self.coarse.tolist()}


@dataclass(frozen=True)
class HistogramPlan:
    """How numbers are measured: the bin tree's shape and the rules for spikes (see the module docstring)."""

    fine_bins: int = 16
    branching: int = 8
    levels: int = 2
    spike_share: float = 0.2  # of a number column's rho, for its spikes
    min_support: int = 10  # without privacy: rows a spike or a split bin needs
    spike_frac: float = 0.005  # without privacy: share of the rows a spike needs


def measure_category(tokens: np.ndarray, col: ColumnTokens, acct: ZCDPAccountant, rho: float) -> ColumnDomain:
    """Noisy counts of every level (the levels are public: the DP encoder's), each level its own coarse token."""
    counts = np.bincount(tokens, minlength=col.width).astype(np.float64)
    mass = np.maximum(acct.gaussian(counts, rho, f"{col.column}: level counts"), 0.0)
    return ColumnDomain(col, mass, np.arange(col.width, dtype=np.int64))


def measure_number(
    values: np.ndarray,
    missing: np.ndarray,
    col: ColumnTokens,
    bounds: tuple[float, float],
    acct: ZCDPAccountant,
    rho: float,
    delta: float,
    plan: HistogramPlan,
) -> ColumnDomain:
    """Spikes, missing count and the adaptive histogram of one number column, spending `rho` and `delta` of its own.

    Args:
        values: (n,) encoded values (anything where `missing`).
        missing: (n,) bool, the rows whose value is missing.
        col: the column's tokens; its `spikes` and `edges` are set here.
        bounds: the public range of the encoded values; values outside are clipped into the end bins.
    """
    present = values[~missing]
    lo, hi = bounds
    if hi <= lo:
        hi = lo + 1.0
    rho_spikes = plan.spike_share * rho if acct.private else np.inf
    rho_level = (rho - rho_spikes) / (plan.levels + 1) if acct.private else np.inf
    spikes, spike_mass = _spikes(present, col.column, acct, rho_spikes, delta, plan)
    rest = np.clip(present[~np.isin(present, spikes)], lo, hi)

    # Level 0: equal-width bins plus the missing count, one release.
    edges = np.linspace(lo, hi, plan.fine_bins + 1)
    counts = np.r_[missing.sum(), _bin_counts(rest, edges)].astype(np.float64)
    noisy = acct.gaussian(counts, rho_level, f"{col.column}: histogram level 0")
    sigma = acct.sigma(rho_level)
    kept = np.where(noisy < 1.5 * sigma, 0.0, noisy)  # an empty bin's noise is not mass (post-processing)
    if not kept[1:].any():  # every bin under the noise (a tiny table, a small budget): values still need a home
        kept[1:] = np.maximum(noisy[1:], 0.0) if (noisy[1:] > 0).any() else 1.0
    missing_mass, mass = max(kept[0], 0.0), kept[1:]
    for level in range(1, plan.levels + 1):
        edges, mass = _refine(rest, edges, mass, acct, rho_level, plan, level, col.column)

    col.spikes, col.edges = spikes.tolist(), edges.tolist()
    fine_mass = np.r_[missing_mass if col.missing_at >= 0 else 0.0, spike_mass, mass]
    return ColumnDomain(col, fine_mass)


def _spikes(
    present: np.ndarray, name: str, acct: ZCDPAccountant, rho: float, delta: float, plan: HistogramPlan
) -> tuple[np.ndarray, np.ndarray]:
    """Exact values held by many rows, and their noisy counts (sorted by value)."""
    if present.size == 0:
        return np.zeros(0), np.zeros(0)
    uniq, counts = np.unique(present, return_counts=True)
    if not acct.private:
        keep = counts >= max(plan.min_support, plan.spike_frac * present.size)
        return uniq[keep], counts[keep].astype(np.float64)
    noisy = acct.gaussian(counts, rho, f"{name}: heaped values")
    threshold = 1.0 + acct.sigma(rho) * float(norm.isf(delta))
    keep = noisy >= threshold
    return uniq[keep], noisy[keep]


def _bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Rows per bin of `edges` (values beyond the ends fall in the end bins)."""
    idx = np.searchsorted(edges[1:-1], values, side="right")
    return np.bincount(idx, minlength=edges.size - 1)


def _refine(
    values: np.ndarray,
    edges: np.ndarray,
    mass: np.ndarray,
    acct: ZCDPAccountant,
    rho: float,
    plan: HistogramPlan,
    level: int,
    name: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Split every bin whose estimate can carry `branching` noisy children, measure the children in one release and
    scale them to their parent's estimate (top-down consistency)."""
    b = plan.branching
    sigma = acct.sigma(rho)
    need = 2.0 * b * sigma if acct.private else 2.0 * plan.min_support * b
    split = np.flatnonzero(mass >= need)
    if split.size == 0:
        return edges, mass
    children = np.concatenate([np.linspace(edges[i], edges[i + 1], b + 1)[:-1] for i in split] + [edges[-1:]])
    # The new edge list: every old edge, plus the inner edges of the split bins.
    new_edges = np.unique(np.r_[edges, children])
    parent = np.searchsorted(edges[1:-1], (new_edges[:-1] + new_edges[1:]) / 2, side="right")
    is_child = np.isin(parent, split)
    counts = _bin_counts(values, new_edges).astype(np.float64)
    noisy = counts.copy()
    noisy[is_child] = acct.gaussian(counts[is_child], rho, f"{name}: histogram level {level}")
    noisy = np.maximum(noisy, 0.0)
    new_mass = np.where(is_child, 0.0, mass[parent])
    for i in split:
        kids = np.flatnonzero(parent == i)
        total = noisy[kids].sum()
        share = noisy[kids] / total if total > 0 else np.full(kids.size, 1.0 / kids.size)
        new_mass[kids] = mass[i] * share
    return new_edges, new_mass


def assign_coarse(domain: ColumnDomain, k: int) -> None:
    """Group a number column's fine tokens: missing, each spike, then `k` runs of bins of about equal mass."""
    col = domain.tokens
    if col.kind == "category":
        domain.coarse = np.arange(col.width, dtype=np.int64)
        return
    first = col.first_bin
    bins = domain.mass[first:]
    total = bins.sum()
    if total > 0:
        cum = np.cumsum(bins) - bins / 2  # each bin's mass midpoint
        group = np.minimum((cum / total * k).astype(np.int64), k - 1)
    else:
        group = np.minimum(np.arange(bins.size) * k // max(bins.size, 1), k - 1)
    group = np.unique(group, return_inverse=True)[1]  # no empty groups
    head = np.arange(first, dtype=np.int64)  # missing (0) and each spike
    domain.coarse = np.r_[head, first + group].astype(np.int64)
