"""Heaped values (round numbers, zero inflation) come back as exact spikes for every family, inside the support."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from synthgate.models.encoders.table import TableEncoder
from synthgate.models.registry import build_model
from synthgate.schemas.table import infer_schema
from synthgate.tasks.sample import sample_rows


def heaped_table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Expenses heaped on multiples of 500 (60% of rows), a zero-inflated bonus, and an income both follow."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 0.4, n)
    heaped = rng.random(n) < 0.6
    amount = np.where(heaped, 500 * np.clip(np.round(income / 8000), 1, 8), (income / 10).round(0))
    bonus = np.where(rng.random(n) < 0.4, 0.0, (income * rng.uniform(0.01, 0.05, n)).round(2))
    return pd.DataFrame({"income": income.round(2), "amount": amount.astype(float), "bonus": bonus})


def test_encoder_finds_spikes_and_snaps_smeared_values_back():
    # Arrange: a decoded sample whose amounts were smeared by +-40 around the real ones
    frame = heaped_table()
    encoder = TableEncoder(infer_schema(frame)).fit(frame)
    smeared = frame.copy()
    smeared["amount"] = smeared["amount"] + np.random.default_rng(1).uniform(-40, 40, len(frame))

    # Act
    plain = encoder.inverse_transform(encoder.transform(smeared))
    snapped = encoder.inverse_transform(encoder.transform(smeared), snap=True)

    # Assert
    state = next(s for s in encoder.columns_ if s.name == "amount")
    assert 500.0 in state.spikes and 0.0 in next(s for s in encoder.columns_ if s.name == "bonus").spikes
    real_share = (frame["amount"] % 500 == 0).mean()
    assert (plain["amount"] % 500 == 0).mean() < 0.05
    assert abs((snapped["amount"] % 500 == 0).mean() - real_share) < 0.03
    assert (snapped["amount"] - smeared["amount"]).abs().max() <= 0.5 * state.std + 1e-6


def test_round_trip_without_snap_is_unchanged(penguins):
    # Arrange
    encoder = TableEncoder(infer_schema(penguins)).fit(penguins)

    # Act
    back = encoder.inverse_transform(encoder.transform(penguins))

    # Assert
    pd.testing.assert_series_equal(back["body_mass_g"], penguins["body_mass_g"], check_names=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gmm", "arn"])
def test_sampled_rows_keep_heaping_zero_inflation_and_support(name):
    # Arrange
    torch.set_num_threads(1)
    frame = heaped_table()
    schema = infer_schema(frame)
    encoder = TableEncoder(schema).fit(frame)
    model = build_model(name, spans=encoder.spans_, device="cpu").fit(encoder.transform(frame))

    # Act
    rows = sample_rows(model, encoder, 3000, seed=0)

    # Assert: shares of exact round values within a few points of the source's; nothing outside the real range
    for col, real_share, syn_share in [
        ("amount", (frame["amount"] % 500 == 0).mean(), (rows["amount"] % 500 == 0).mean()),
        ("bonus", (frame["bonus"] == 0).mean(), (rows["bonus"] == 0).mean()),
    ]:
        assert abs(syn_share - real_share) < 0.05, (col, real_share, syn_share)
        assert rows[col].min() >= frame[col].min() and rows[col].max() <= frame[col].max()


def test_spikes_with_more_decimals_than_the_schema_keeps_come_back_exact():
    # Arrange: log family size, heaped at log(1), log(2), log(3) at full float precision
    rng = np.random.default_rng(0)
    lfam = np.log(rng.choice([1, 2, 3, 4], 2000)) + np.where(rng.random(2000) < 0.3, rng.normal(0, 0.2, 2000), 0)
    frame = pd.DataFrame({"lfam": lfam})
    encoder = TableEncoder(infer_schema(frame)).fit(frame)
    smeared = frame.assign(lfam=frame["lfam"] + rng.uniform(-0.01, 0.01, len(frame)))

    # Act
    rows = encoder.inverse_transform(encoder.transform(smeared), snap=True)

    # Assert
    assert abs((rows["lfam"] == np.log(2)).mean() - (frame["lfam"] == np.log(2)).mean()) < 0.02
