"""Mode-specific normalisation: batched EM finds the modes, and the encoder round-trips through it."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import synthgate.models.encoders.modes as modes
from synthgate.models.encoders.modes import decode_modes, encode_modes, fit_modes
from synthgate.models.encoders.table import TableEncoder
from synthgate.schemas.table import infer_schema


def test_fit_modes_finds_two_modes_and_handles_missing():
    # Arrange: a bimodal column, a normal one with missing values, and a five-valued integer column.
    rng = np.random.default_rng(0)
    n = 20_000
    bimodal = np.concatenate([rng.normal(-5, 1, n // 2), rng.normal(5, 0.5, n // 2)])
    normal = rng.normal(0, 1, n)
    normal[:500] = np.nan
    steps = rng.integers(0, 5, n).astype(float)
    matrix = np.stack([bimodal, normal, steps] + [rng.normal(0, 1, n) for _ in range(20)], axis=1)

    # Act
    start = time.perf_counter()
    modes = fit_modes(matrix, max_modes=10)
    seconds = time.perf_counter() - start

    # Assert: every mode centre lies near -5 or 5, both sides are covered with about half the weight each.
    weights, means, _ = modes[0]
    assert all(min(abs(m + 5), abs(m - 5)) < 1.5 for m in means)
    left = sum(w for w, m in zip(weights, means, strict=True) if m < 0)
    assert left == pytest.approx(0.5, abs=0.02)
    assert all(np.isfinite(modes[1][1]))
    assert sorted(round(m) for m in modes[2][1]) == [0, 1, 2, 3, 4]
    assert len(modes) == 23 and seconds < 20  # one batched pass, not a minute-long loop per column


def test_encode_decode_modes_is_exact():
    # Arrange
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(-5, 1, 1000), rng.normal(5, 0.5, 1000)])
    weights, means, stds = fit_modes(values[:, None], 10)[0]
    # Act
    scaled, mode = encode_modes(values, weights, means, stds)
    back = decode_modes(scaled, mode, means, stds)
    # Assert
    assert np.allclose(back, values, atol=1e-5)
    assert np.mean(np.abs(scaled) <= 1) > 0.99
    assert mode.dtype == np.int64 and scaled.dtype == np.float32


def test_mode_encoder_round_trips_penguins(penguins):
    # Arrange
    encoder = TableEncoder(infer_schema(penguins), normalization="mode")
    # Act
    decoded = encoder.inverse_transform(encoder.fit_transform(penguins))
    # Assert
    for col in decoded.columns:
        assert decoded[col].dtype == penguins[col].dtype, col
        pd.testing.assert_series_equal(decoded[col], penguins[col], check_names=False, rtol=1e-4)


def test_mode_encoder_round_trips_a_bimodal_column():
    # Arrange
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"v": np.concatenate([rng.normal(-10, 1, 500), rng.normal(10, 2, 500)]).round(1)})
    encoder = TableEncoder(infer_schema(frame), normalization="mode")
    # Act
    encoded = encoder.fit_transform(frame)
    decoded = encoder.inverse_transform(encoded)
    # Assert: two or more modes, each value in a mode on its own side, values back exactly (1 decimal).
    span = encoder.span_of("v", "mode")
    assert span.width >= 2
    np.testing.assert_allclose(decoded["v"].to_numpy(), frame["v"].to_numpy(), atol=1e-6)


def test_merging_equal_bins_leaves_the_fit_unchanged(penguins, monkeypatch):
    # Arrange: penguins' numbers, 344 rows of 55-164 distinct values a column, one bin a row, some missing.
    matrix = penguins.select_dtypes("number").to_numpy(dtype=float)
    summaries = [modes._bin_summaries(np.ascontiguousarray(column), modes.N_BINS) for column in matrix.T]
    cnt, pts, within = (np.stack(part, axis=-1) for part in list(zip(*summaries, strict=True))[2:])

    # Act
    merged = modes._distinct_bins(cnt, pts, within)
    fitted = fit_modes(matrix, 10)
    monkeypatch.setattr(modes, "_distinct_bins", lambda c, p, w: (c[c.sum(1) > 0], p[c.sum(1) > 0], w[c.sum(1) > 0]))
    unmerged = fit_modes(matrix, 10)  # every non-empty bin on its own

    # Assert: fewer bins, with the counts and the moments the EM reads (sums of c, c m, c (m^2 + v)) per column kept;
    # and the same modes as the unmerged EM, up to what float rounding can move: a mean by less than the EM's stopping
    # step (TOL column stds), a std by the cancellation in E[x^2] - m^2, eps (m^2 + s^2) / s (16 ulps of margin for the
    # sums' rounding), which for a std on the floor of a column far from zero (years: 2007-2009) is 1e-3 of it.
    assert merged[0].shape[0] < (cnt.sum(1) > 0).sum()
    for before, after in ((cnt, merged[0]), (cnt * pts, merged[0] * merged[1])):
        np.testing.assert_allclose(after.sum(0), before.sum(0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(
        (merged[0] * (merged[1] ** 2 + merged[2])).sum(0), (cnt * (pts**2 + within)).sum(0), rtol=1e-12
    )
    eps = np.finfo(np.float64).eps
    for got, want, col_std in zip(fitted, unmerged, np.nanstd(matrix, axis=0), strict=True):
        (w1, m1, s1), (w2, m2, s2) = (map(np.asarray, params) for params in (got, want))
        np.testing.assert_allclose(w1, w2, rtol=1e-6, atol=modes.TOL)
        np.testing.assert_allclose(m1, m2, rtol=0, atol=modes.TOL * col_std)
        np.testing.assert_allclose(
            s1, s2, rtol=1e-6, atol=np.max(16 * eps * (m2**2 + s2**2) / s2) + modes.TOL * col_std
        )


def test_merging_by_bic_leaves_one_mode_per_planted_gaussian_and_keeps_real_modes():
    # Arrange: three Gaussians (std 1 at -4, 0 and 4, weights 0.1 / 0.6 / 0.3), the EM's ten modes tile them; a
    # five-valued integer column and a well separated bimodal column beside it.
    rng = np.random.default_rng(0)
    n = 2500
    centre = rng.choice([-4.0, 0.0, 4.0], size=n, p=[0.1, 0.6, 0.3])
    three = centre + rng.normal(0, 1, n)
    steps = rng.integers(0, 5, n).astype(float)
    bimodal = np.concatenate([rng.normal(-5, 1, n // 2), rng.normal(5, 0.5, n - n // 2)])
    matrix = np.stack([three, steps, bimodal], axis=1)

    # Act
    em = fit_modes(matrix, 10)
    merged = fit_modes(matrix, 10, merge=True)

    # Assert: the EM over-splits the three Gaussians; merged, one mode each, at their centres, weights and widths
    assert len(em[0][0]) > 3
    weights, means, stds = merged[0]
    np.testing.assert_allclose(means, [-4, 0, 4], atol=0.2)
    np.testing.assert_allclose(weights, [0.1, 0.6, 0.3], atol=0.03)
    np.testing.assert_allclose(stds, [1, 1, 1], atol=0.15)
    assert sorted(round(m) for m in merged[1][1]) == [0, 1, 2, 3, 4]  # five spikes: each merge would lose far more
    assert len(merged[2][1]) == 2 and sorted(round(m) for m in merged[2][1]) == [-5, 5]


def test_the_gan_s_encoder_merges_modes_and_the_vae_s_does_not():
    # Arrange
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"v": rng.normal(0, 1, 3000).round(3)})
    schema = infer_schema(frame)

    # Act
    widths = {
        norm: TableEncoder(schema, normalization=norm).fit(frame).span_of("v", "mode").width
        for norm in ("mode", "mode_bic")
    }

    # Assert: one Gaussian is one mode once merged; the EM alone tiles it
    assert widths["mode_bic"] == 1
    assert widths["mode"] > 1
