"""Mode-specific normalisation of continuous columns, fitted for every column at once.

A skewed or multi-modal column is hard for a neural network to reproduce from a single z-score. CTGAN and TVAE
(Xu et al. 2019, "Modeling Tabular Data using Conditional GAN", section 4.2) instead fit a 1-D Gaussian mixture per
column, then encode a value as (which mode it belongs to, its offset within that mode scaled by 4 sigma). RDT does this
with one scikit-learn `BayesianGaussianMixture` per column on every row, which takes minutes on wide, long tables.

Here each column is first summarised by `N_BINS` equal-count bins (count, mean and variance of the values in each, all
columns in one sort and one scatter), and a 1-D EM runs batched over every column on those summaries: one
`(n_bins, n_columns, n_modes)` tensor per iteration, whatever the row count. The weights use the variational update of
a Dirichlet prior with a small concentration (Bishop, PRML 10.2; sklearn's `BayesianGaussianMixture`), which starves
superfluous modes; modes under `MIN_WEIGHT` are pruned and modes that overlap within one sigma are merged by moment
matching. The prior starves slowly: within the EM's iterations a Gaussian column often stays tiled by several
overlapping modes (ten for a column of three Gaussians). `fit_modes(merge=True)` then merges neighbouring modes while
the mixture's BIC falls, which leaves one mode per Gaussian (`_merge_by_bic`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import digamma

MIN_WEIGHT = 0.005  # CTGAN's threshold: modes carrying less than 0.5% of the rows are dropped
N_BINS = 512  # equal-count bins per column; EM cost no longer grows with the number of rows
# sklearn's BayesianGaussianMixture default (RDT's too); 200 doubled the fit on small tables for the same modes.
N_ITER = 100
PRUNE_EVERY = 20
TOL = 1e-4  # EM stops when no mode mean moves by more than this many column stds in an iteration
CONCENTRATION = 1e-3  # Dirichlet prior on the weights: small values favour few modes (RDT uses 0.001 too)
STD_FLOOR = 1e-3  # relative to the column's std: a mode on one repeated value must not get sigma 0
SCALE = 4.0  # offsets are divided by 4 sigma so they land in about [-1, 1] (CTGAN)

ModeParams = tuple[list[float], list[float], list[float]]
Scalars = float | np.ndarray  # one mode's parameter, or one per neighbouring pair


def _bin_summaries(values: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    """Standardise one column and summarise it as equal-count bins, from one sort.

    One column at a time, vectorised over its rows: the temporaries are a column long and reused, where the
    whole-matrix version allocated a gigabyte of them on large tables; and numpy's vectorised sort of a contiguous
    column beats torch's column sort (docs/decisions.md#encoder-speed).

    Args:
        values: (n,) floats, NaN (or any non-finite) where missing.

    Returns:
        `(mean, std, count, bin_mean, bin_var)`: the column's mean and std over observed values, then (n_bins,) each.
    """
    observed = values[np.isfinite(values)]
    n = len(observed)
    mean = float(observed.mean()) if n else 0.0
    std = float(observed.std()) if n else 1.0
    std = std if std > 1e-12 else 1.0
    z = np.sort((observed - mean) / std)
    b = np.arange(n, dtype=np.int64) * n_bins // max(n, 1)  # equal-count bin of each rank
    cnt = np.bincount(b, minlength=n_bins).astype(np.float64)
    s1 = np.bincount(b, weights=z, minlength=n_bins)
    s2 = np.bincount(b, weights=np.square(z, out=z), minlength=n_bins)
    bin_mean = s1 / np.maximum(cnt, 1)
    bin_var = np.maximum(s2 / np.maximum(cnt, 1) - bin_mean**2, 0.0)
    return mean, std, cnt, bin_mean, bin_var


def _distinct_bins(cnt: np.ndarray, pts: np.ndarray, within: np.ndarray) -> tuple[np.ndarray, ...]:
    """Merge each column's bins that hold the same values and drop its empty bins; columns padded with empty bins.

    Every EM sum runs over bins of count x a function of the bin's mean and within-bin variance, so bins equal in
    both merge into one with their summed count and the fit is unchanged. A small table of repeated values shrinks
    the EM's arrays by half or more: penguins' 344 rows fill 344 one-row bins, which hold 55-164 distinct values a
    column. A large table's bins are all distinct and stay as they are.

    Args:
        cnt, pts, within: (B, d) bin counts, means and variances, as `_bin_summaries` gives them side by side.

    Returns:
        `(cnt, pts, within)`, each (B', d) with B' the most distinct values of any column; padding bins count 0.
    """
    columns = []
    for c, m, v in zip(cnt.T, pts.T, within.T, strict=True):  # d columns, not rows
        observed = c > 0
        c, m, v = c[observed], m[observed], v[observed]
        first = np.ones(len(c), dtype=bool)  # bins are in value order: equal bins are neighbours
        first[1:] = (m[1:] != m[:-1]) | (v[1:] != v[:-1])
        columns.append((np.bincount(np.cumsum(first) - 1, weights=c, minlength=int(first.sum())), m[first], v[first]))
    merged = np.zeros((3, max((len(m) for _, m, _ in columns), default=0), len(columns)))
    for j, part in enumerate(columns):
        for row, values in zip(merged, part, strict=True):
            row[: len(values), j] = values
    return merged[0], merged[1], merged[2]


def _moment_match(
    wa: Scalars, ma: Scalars, sa: Scalars, wb: Scalars, mb: Scalars, sb: Scalars, var_floor: float = 0.0
) -> tuple[Scalars, Scalars, Scalars]:
    """The one Gaussian with two modes' total weight, mean and variance: `(w, m, s)`, each a float or, given arrays
    (every neighbouring pair at once), an array; the variance is kept at `var_floor` or above."""
    w = wa + wb
    m = (wa * ma + wb * mb) / w
    return w, m, np.sqrt(np.maximum((wa * (sa**2 + ma**2) + wb * (sb**2 + mb**2)) / w - m**2, var_floor))


def _merge_overlapping(w: list[float], m: list[float], s: list[float]) -> ModeParams:
    """Merge neighbouring modes closer than one sigma, by matching the pair's weight, mean and variance."""
    modes = sorted(zip(w, m, s, strict=True), key=lambda t: t[1])
    merged = [modes[0]]
    for wi, mi, si in modes[1:]:
        wp, mp, sp = merged[-1]
        if mi - mp < max(si, sp):
            merged[-1] = tuple(map(float, _moment_match(wp, mp, sp, wi, mi, si)))
        else:
            merged.append((wi, mi, si))
    ws, ms, ss = (list(t) for t in zip(*merged, strict=True))
    return ws, ms, ss


def fit_modes(matrix: np.ndarray, max_modes: int, *, merge: bool = False) -> list[ModeParams]:
    """Fit a 1-D Gaussian mixture to every column of `matrix` in one batched EM.

    Args:
        matrix: (n_rows, n_columns) float values, NaN where missing.
        max_modes: the most modes any column may keep.
        merge: then merge each column's neighbouring modes while that lowers the mixture's BIC (`_merge_by_bic`).

    Returns:
        Per column, `(weights, means, stds)` of the kept modes, sorted by mean. Deterministic.
    """
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"fit_modes expects an (n_rows, n_columns) matrix, got shape {x.shape}")
    d = x.shape[1]
    summaries = [_bin_summaries(np.ascontiguousarray(x[:, j]), N_BINS) for j in range(d)]  # d columns, not rows
    # Columns side by side: col_mean and col_std (d,), the bin counts, means and variances (B, d).
    col_mean, col_std, cnt, pts, within = (np.stack(part, axis=-1) for part in zip(*summaries, strict=True))
    n_obs = np.maximum(cnt.sum(0), 1.0)  # (d,) observed values per column
    k = max(1, int(max_modes))
    # The EM itself runs in numpy (only its exp goes through torch, below): its arrays are tiny, and torch's thread
    # pool only adds synchronisation to them.
    # Initialise means at evenly spaced bins (quantiles), equal weights, a shared width.
    init_bins = ((np.arange(k) + 0.5) * N_BINS / k).astype(np.int64)
    means = pts[init_bins].T.copy()  # (d, k)
    # Empty bins weigh nothing and equal bins weigh as one (`_distinct_bins`): on small tables the EM's arrays shrink.
    cnt, pts, within = _distinct_bins(cnt, pts, within)
    stds = np.full((d, k), 1.0 / k)
    nk = np.repeat((n_obs / k)[:, None], k, axis=1)
    alive = np.ones((d, k), dtype=bool)
    # Columns lead and bins are last, so every reduction runs over contiguous memory: over bins for the M-step's
    # sums, over modes as an elementwise max / sum of k (B,)-rows per column. Both steps are batched matrix products:
    # the E-step's log densities are a quadratic in each bin's mean, [m^2, m, 1] @ coefficients per mode, and the
    # M-step's moments are responsibilities @ [1, m, m^2 + within-bin variance] per bin.
    pts_t = np.ascontiguousarray(pts.T)  # (d, B)
    powers = np.stack([pts_t**2, pts_t, np.ones_like(pts_t)], axis=1)  # (d, 3, B)
    stats = np.stack([np.ones_like(pts_t), pts_t, (pts**2 + within).T], axis=2)  # (d, B, 3)
    cnt_t = np.ascontiguousarray(cnt.T)[:, None, :]  # (d, 1, B)
    resp = np.empty((d, k, len(cnt)))  # the EM's one (d, k, B) array, reused every iteration
    resp_t = torch.from_numpy(resp)  # the same memory: torch's vectorised float64 exp is faster
    coefficients = np.empty((d, k, 3))  # each mode's quadratic in a bin's mean, rewritten every iteration

    for it in range(N_ITER):
        previous = means
        # E-step: log weight + log density of every bin under every mode, up to a constant per column (which the
        # normalisation over modes removes). The log weight is its expectation under the Dirichlet posterior (Bishop,
        # PRML eq. 10.66), less the column's digamma(k * CONCENTRATION + n), a constant.
        log_w = digamma(CONCENTRATION + nk)
        precision = stds**-2.0
        coefficients[:, :, 0] = -0.5 * precision
        np.multiply(means, precision, out=coefficients[:, :, 1])
        coefficients[:, :, 2] = np.where(alive, log_w, -np.inf) - np.log(stds) - 0.5 * means * coefficients[:, :, 1]
        np.matmul(coefficients, powers, out=resp)
        resp -= resp.max(axis=1, keepdims=True)
        # exp(-50) is nothing next to the best mode's 1, and far-away bins would otherwise make subnormal numbers,
        # which took the exp three times as long.
        resp_t.clamp_(min=-50.0).exp_()
        resp *= cnt_t / resp.sum(axis=1, keepdims=True)  # (d, k, B), weighted by the rows in each bin
        # M-step: the within-bin variance keeps the fit exact up to the binning of the means. The variance is the
        # weighted mean square minus the squared mean (standardised values: no cancellation to fear).
        moments = resp @ stats  # (d, k, 3)
        nk = moments[:, :, 0]  # (d, k)
        safe = np.maximum(nk, 1e-10)
        means = moments[:, :, 1] / safe
        var = moments[:, :, 2] / safe - means**2
        stds = np.maximum(np.sqrt(np.maximum(var, 0.0)), STD_FLOOR)
        # Converged when no mean moves by more than TOL column stds; then prune once more and stop unless that
        # removed a mode (the survivors then get more iterations). Small tables converge in a few dozen iterations.
        converged = bool(np.max(np.abs(means - previous), where=alive, initial=0.0) < TOL)
        if (it + 1) % PRUNE_EVERY == 0 or converged:
            weights = nk / n_obs[:, None]
            heaviest = np.eye(k, dtype=bool)[weights.argmax(1)]
            pruned = (alive & (weights >= MIN_WEIGHT)) | heaviest  # never prune every mode of a column
            if converged and np.array_equal(pruned, alive):
                break
            alive = pruned
            nk = np.where(alive, nk, 0.0)

    weights = np.where(alive, nk, 0.0) / n_obs[:, None]
    out: list[ModeParams] = []
    for j in range(d):  # d short lists of at most k numbers: not a per-row loop
        keep = alive[j]
        w, m, s = weights[j][keep] / weights[j][keep].sum(), means[j][keep], stds[j][keep]
        if merge:
            w, m, s = _merge_by_bic(w, m, s, cnt[:, j], pts[:, j], within[:, j])
        out.append(_merge_overlapping(w.tolist(), (m * col_std[j] + col_mean[j]).tolist(), (s * col_std[j]).tolist()))
    return out


def _merge_by_bic(
    w: np.ndarray, m: np.ndarray, s: np.ndarray, cnt: np.ndarray, pts: np.ndarray, within: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge neighbouring modes, one pair at a time, while each merge lowers the mixture's BIC.

    The EM starts from `max_modes` modes and its weak Dirichlet prior rarely empties one within its iterations: a
    column drawn from three Gaussians kept all ten modes, six of them tiling the middle Gaussian at a fifth of its
    width. Such modes overlap, so a model that picks a row's mode for each column on its own (the gan draws it)
    scatters values between neighbours and loses the columns' correlation (docs/decisions.md#normalization-per-model).
    Each round merges the neighbouring pair whose moment-matched merge loses the
    least log-likelihood over the column's bins and keeps the result while what it lost is under BIC's price of the
    three parameters it frees, 1.5 log n; a merge that costs more is judged again after a few EM iterations have let
    the other modes take back the rows they now explain better (only then: EM rounds are most of this step's time).
    Pieces of one Gaussian then merge and real modes stay (merging two modes some sigmas apart loses hundreds of
    nats).

    Args:
        w, m, s: (k,) the EM's weights (summing to 1), means and stds, in standardised units.
        cnt, pts, within: (B,) the column's bin counts, means and within-bin variances (padding bins count 0).

    Returns:
        `(w, m, s)` of the kept modes, sorted by mean.
    """
    order = np.argsort(m)
    w, m, s = w[order], m[order], s[order]
    observed = cnt > 0
    bins = cnt[observed], pts[observed, None], within[observed, None]
    price = 1.5 * math.log(max(bins[0].sum(), 2.0))
    while len(w) > 1:
        dens = _bin_density(w, m, s, *bins[1:])
        total = dens.sum(1, keepdims=True)
        loglik = float(bins[0] @ np.log(np.maximum(total[:, 0], 1e-300)))  # the current modes', as `_bin_loglik`
        # every neighbouring pair's merged mode
        w2, m2, s2 = _moment_match(w[:-1], m[:-1], s[:-1], w[1:], m[1:], s[1:], STD_FLOOR**2)
        merged = total - dens[:, :-1] - dens[:, 1:] + _bin_density(w2, m2, s2, *bins[1:])  # (B, k - 1)
        merged_loglik = bins[0] @ np.log(np.maximum(merged, 1e-300))
        i = int(np.argmax(merged_loglik))
        candidate = tuple(np.concatenate([a[:i], b[i : i + 1], a[i + 2 :]]) for a, b in ((w, w2), (m, m2), (s, s2)))
        candidate_loglik = float(merged_loglik[i])
        if loglik - candidate_loglik >= price:  # too dear as it stands: let the modes settle, then judge again
            candidate = _em_on_bins(*candidate, *bins)
            candidate_loglik = _bin_loglik(*candidate, *bins)
            if loglik - candidate_loglik >= price:
                break
        w, m, s = candidate
    return w, m, s


def _bin_density(w: np.ndarray, m: np.ndarray, s: np.ndarray, pts: np.ndarray, within: np.ndarray) -> np.ndarray:
    """(B, k) weighted density of each bin's mean under each mode, the bin's own spread added to the mode's."""
    var = s**2 + within
    return w * np.exp(-0.5 * (pts - m) ** 2 / var) / np.sqrt(2 * math.pi * var)


def _bin_loglik(
    w: np.ndarray, m: np.ndarray, s: np.ndarray, cnt: np.ndarray, pts: np.ndarray, within: np.ndarray
) -> float:
    """The mixture's log-likelihood of a column summarised by its bins (each bin's rows at its mean)."""
    return float(cnt @ np.log(np.maximum(_bin_density(w, m, s, pts, within).sum(1), 1e-300)))


def _em_on_bins(
    w: np.ndarray, m: np.ndarray, s: np.ndarray, cnt: np.ndarray, pts: np.ndarray, within: np.ndarray, iters: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A few plain EM iterations of one column's modes on its bins: after a merge the other modes take back the rows
    they now explain better. Returns `(w, m, s)` sorted by mean."""
    for _ in range(iters):
        resp = _bin_density(w, m, s, pts, within)
        resp *= cnt[:, None] / np.maximum(resp.sum(1, keepdims=True), 1e-300)
        nk = np.maximum(resp.sum(0), 1e-10)
        m = (resp * pts).sum(0) / nk
        s = np.sqrt(np.maximum((resp * (pts**2 + within)).sum(0) / nk - m**2, STD_FLOOR**2))
        w = nk / nk.sum()
    order = np.argsort(m)
    return w[order], m[order], s[order]


def encode_modes(
    values: np.ndarray, weights: list[float], means: list[float], stds: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Map values to (offset within their most responsible mode / 4 sigma, mode index).

    The mode is the argmax of the responsibility rather than a draw from it (CTGAN draws): deterministic, so the same
    frame always encodes to the same tensor, and decoding inverts it exactly.

    Args:
        values: (n,) finite floats (the encoder fills missing entries before calling).

    Returns:
        `(scaled, mode)`: (n,) float32 mostly within [-1, 1], and (n,) int64 mode indices.
    """
    v = np.asarray(values, dtype=np.float64)[:, None]  # (n, 1)
    w, m, s = (np.asarray(a, dtype=np.float64)[None, :] for a in (weights, means, stds))  # (1, k) each
    log_resp = np.log(np.maximum(w, 1e-300)) - np.log(s) - 0.5 * ((v - m) / s) ** 2  # (n, k)
    mode = log_resp.argmax(axis=1)
    scaled = (v[:, 0] - m[0, mode]) / (SCALE * s[0, mode])
    return scaled.astype(np.float32), mode.astype(np.int64)


def decode_modes(scaled: np.ndarray, mode: np.ndarray, means: list[float], stds: list[float]) -> np.ndarray:
    """Invert `encode_modes`: value = mean[mode] + scaled * 4 * std[mode]."""
    m = np.asarray(means, dtype=np.float64)
    s = np.asarray(stds, dtype=np.float64)
    mode = np.clip(np.asarray(mode, dtype=np.int64), 0, len(m) - 1)
    return m[mode] + np.asarray(scaled, dtype=np.float64) * SCALE * s[mode]
