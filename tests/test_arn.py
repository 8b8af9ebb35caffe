"""The autoregressive family on real and planted data: contract, conditioning, structure, heaped values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from synthgate.models.arn import ARN, ARNConfig
from synthgate.models.base import make_generator
from synthgate.models.encoders.table import TableEncoder
from synthgate.schemas.table import infer_schema
from synthgate.tasks.sample import encode_conditions

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ARNConfig(embed_dim=16, hidden=32, epochs=3, batch_size=256)


@pytest.fixture(scope="module")
def penguins_encoded(penguins):
    encoder = TableEncoder(infer_schema(penguins)).fit(penguins)
    return encoder, encoder.transform(penguins)


def heaped_table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A loan amount heaped on multiples of 500 (70% of rows) plus a smooth remainder, and an income it follows."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 0.4, n).round(2)
    heaped = rng.random(n) < 0.7
    amount = np.where(heaped, 500 * rng.integers(1, 9, n), rng.uniform(300, 4500, n).round(0))
    return pd.DataFrame({"income": income, "amount": amount.astype(float)})


def test_contract_fit_seed_save_load(penguins_encoded, tmp_path):
    # Arrange
    encoder, x = penguins_encoded
    model = ARN(FAST, spans=encoder.spans_)

    # Act
    fitted = model.fit(x)
    first = model.sample(50, generator=make_generator(0))
    again = model.sample(50, generator=make_generator(0))
    other = model.sample(50, generator=make_generator(1))
    model.save(tmp_path / "arn")
    reloaded = ARN.load(tmp_path / "arn").sample(50, generator=make_generator(0))

    # Assert
    assert fitted is model
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(first, reloaded)
    decoded = encoder.inverse_transform(first)
    assert decoded["species"].isin(["Adelie", "Chinstrap", "Gentoo"]).all()


def test_numbers_stay_inside_the_observed_support(penguins_encoded, penguins):
    # Arrange
    encoder, x = penguins_encoded
    model = ARN(FAST, spans=encoder.spans_).fit(x)

    # Act
    rows = encoder.inverse_transform(model.sample(2000, generator=make_generator(0)))

    # Assert
    for col in ("bill_length_mm", "flipper_length_mm", "body_mass_g"):
        assert rows[col].min() >= penguins[col].min() and rows[col].max() <= penguins[col].max()


@pytest.mark.slow
def test_conditions_fix_a_late_column_and_move_earlier_ones(penguins_encoded, penguins):
    # Arrange: species is first in table order; condition on sex (late) and on island, and check the joint follows.
    encoder, x = penguins_encoded
    model = ARN(ARNConfig(embed_dim=16, hidden=64, epochs=60, batch_size=128), spans=encoder.spans_).fit(x)
    cond = encode_conditions(encoder, {"island": "Torgersen"})

    # Act
    rows = encoder.inverse_transform(model.sample(400, conditions=cond, generator=make_generator(0)))

    # Assert: every row is on Torgersen, and only Adelie penguins live there in the real data.
    assert (rows["island"] == "Torgersen").all()
    assert (rows["species"] == "Adelie").mean() > 0.8


@pytest.mark.slow
def test_species_bill_length_means_are_reproduced(penguins_encoded, penguins):
    # Arrange
    encoder, x = penguins_encoded
    model = ARN(ARNConfig(seed=0), spans=encoder.spans_).fit(x)

    # Act
    rows = encoder.inverse_transform(model.sample(3000, generator=make_generator(0)))

    # Assert: species moves bill length by up to 10 mm; the conditionals keep each species' mean within 1.5 mm.
    real = penguins.groupby("species")["bill_length_mm"].mean()
    synthetic = rows.groupby("species")["bill_length_mm"].mean()
    assert (synthetic - real).abs().max() < 1.5


@pytest.mark.slow
def test_heaped_values_keep_their_spikes():
    # Arrange
    frame = heaped_table()
    encoder = TableEncoder(infer_schema(frame)).fit(frame)
    model = ARN(ARNConfig(embed_dim=32, hidden=64, epochs=40), spans=encoder.spans_).fit(encoder.transform(frame))

    # Act
    rows = encoder.inverse_transform(model.sample(3000, generator=make_generator(0)))

    # Assert: the share of exact multiples of 500 is within a few points of the source's, each value exact.
    real_share = (frame["amount"] % 500 == 0).mean()
    syn_share = (rows["amount"] % 500 == 0).mean()
    assert abs(syn_share - real_share) < 0.05
    assert rows["amount"].min() >= frame["amount"].min() and rows["amount"].max() <= frame["amount"].max()


@pytest.mark.slow
def test_dp_sgd_reports_the_spent_budget(penguins_encoded):
    # Arrange
    encoder, x = penguins_encoded
    model = ARN(ARNConfig(embed_dim=16, hidden=32, epochs=2, batch_size=64, epsilon=3.0), spans=encoder.spans_)

    # Act
    model.fit(x)
    rows = encoder.inverse_transform(model.sample(100, generator=make_generator(0)))

    # Assert
    assert 0 < model.privacy_["epsilon"] <= 3.0 + 1e-6
    assert len(rows) == 100


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_stacked_loss_equals_the_per_head_loss(penguins_encoded, smoothing):
    # Arrange: the stacked path trains without DP; the per-head path is what Opacus wraps
    encoder, x = penguins_encoded
    model = ARN(FAST, spans=encoder.spans_).fit(x)
    from synthgate.models.arn_tokens import to_tokens

    tokens = torch.from_numpy(to_tokens(x.numpy(), model.columns_)[:, model.order_])

    # Act
    per_head = ARN._loss(model.module_(tokens), tokens, smoothing)
    stacked = model._stacked_loss(model.module_.stacked_logits(tokens), tokens, smoothing)

    # Assert: float32 sums of the same terms in another order
    assert stacked.item() == pytest.approx(per_head.item(), rel=1e-5)


def test_a_checkpoint_saved_before_the_activation_option_loads_with_gelu(penguins_encoded, tmp_path):
    # Arrange: a gelu model saved, then its config stripped of the key older checkpoints lack
    encoder, x = penguins_encoded
    model = ARN(ARNConfig(**{**FAST.__dict__, "activation": "gelu"}), spans=encoder.spans_).fit(x)
    model.save(tmp_path / "arn")
    config = tmp_path / "arn" / "config.json"
    config.write_text(config.read_text().replace('"activation": "gelu",', ""))

    # Act
    reloaded = ARN.load(tmp_path / "arn")

    # Assert
    assert "activation" not in config.read_text()
    assert any(isinstance(m, torch.nn.GELU) for m in reloaded.module_.trunk)
    assert torch.equal(reloaded.sample(20, generator=make_generator(0)), model.sample(20, generator=make_generator(0)))
