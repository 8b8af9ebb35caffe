"""DP-SGD through Opacus (Abadi et al. 2016) with an RDP accountant (Mironov 2017): issue #7."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from models.privacy import default_delta, index_loader, make_private, rdp_epsilon
from schemas.errors import InvalidInputError
from schemas.table import infer_schema
from tasks.dp_preprocess import prepare_training
from tasks.split import split_holdout
from tasks.validate import valid_row_share

warnings.filterwarnings("ignore", category=UserWarning)


def test_accountant_matches_opacus_for_a_known_configuration():
    # Arrange: 1000 rows, batches of 100 (q = 0.1), 5 epochs = 50 steps, target (3, 1e-4).
    torch.manual_seed(0)
    x = torch.randn(1000, 4)
    net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 1))
    private = make_private(
        net, torch.optim.SGD(net.parameters(), lr=0.1), index_loader(1000, 100), epsilon=3.0, delta=1e-4, epochs=5
    )

    # Act
    for _ in range(5):
        for idx in private.batches():
            loss = private.module(x[idx]).pow(2).mean()
            private.optimizer.zero_grad()
            loss.backward()
            private.optimizer.step()
    spent = private.spent_epsilon()

    # Assert
    assert private.sample_rate == pytest.approx(0.1)
    assert private.report()["steps"] == 50
    assert spent == pytest.approx(rdp_epsilon(private.noise_multiplier, 0.1, 50, 1e-4), rel=1e-6)
    assert 2.8 < spent <= 3.0


def test_default_delta_is_below_one_over_n():
    assert default_delta(1000) == pytest.approx(1e-4)


def test_gmm_refuses_epsilon_with_a_clear_message(penguins):
    frame = penguins.dropna().reset_index(drop=True)
    with pytest.raises(InvalidInputError, match="vae"):
        prepare_training(
            frame, infer_schema(frame), model="gmm", epsilon=1.0, delta=None, rare_k=None, public_schema=False
        )


def test_dp_vae_at_epsilon_one_is_schema_valid(penguins):
    # Arrange
    from models.vae import VAE, VAEConfig

    frame = penguins.dropna().reset_index(drop=True)
    train, _ = split_holdout(frame, fraction=0.2, seed=0)
    prepared = prepare_training(
        train, infer_schema(frame), model="vae", epsilon=1.0, delta=None, rare_k=None, public_schema=True
    )
    private = prepared.private
    config = VAEConfig(epochs=5, batch_size=64, **prepared.model_options({}))

    # Act
    model = VAE(config, spans=private.encoder.spans_).fit(private.encoded)
    synthetic = private.encoder.inverse_transform(model.sample(200, generator=torch.Generator().manual_seed(0)))
    eps, delta = prepared.spent(model)

    # Assert
    assert eps <= 1.0 + 1e-6 and delta < 1 / len(train)
    assert valid_row_share(synthetic, prepared.schema) == 1.0


def test_dp_preprocessing_spends_a_share_and_drops_unseen_categories(penguins):
    # Arrange
    frame = penguins.dropna().reset_index(drop=True)
    frame.loc[0, "island"] = "Atlantis"

    # Act
    prepared = prepare_training(
        frame, infer_schema(frame), model="gan", epsilon=10.0, delta=None, rare_k=1, public_schema=False
    )

    # Assert
    assert prepared.private.preprocess_epsilon == pytest.approx(1.0)
    assert "Atlantis" not in prepared.schema.column("island").categories
    assert any("DP category lists" in note for note in prepared.notes)


@pytest.mark.slow
def test_dp_lowers_membership_inference_on_an_overfitting_prone_table(penguins):
    # Arrange: a small table, no early stopping, a weak KL term: the plain VAE sits closer to its training rows.
    # Measured by bench/dp_tradeoff.py on penguins: MIA AUC 0.557 without DP, 0.506 at epsilon 10.
    from models.vae import VAE, VAEConfig
    from tasks.preprocess import encode_training
    from tasks.privacy import mia_auc, privacy_distances

    frame = penguins.dropna().reset_index(drop=True)
    schema = infer_schema(frame)
    train, holdout = split_holdout(frame, fraction=0.2, seed=0)
    base = {"epochs": 40, "batch_size": 100, "val_fraction": 0.0, "patience": None}

    def auc(config: VAEConfig, encoder, x) -> float:
        model = VAE(config, spans=encoder.spans_).fit(x)
        syn = encoder.inverse_transform(model.sample(len(train), generator=torch.Generator().manual_seed(1)))
        return float(mia_auc(privacy_distances(train, holdout, syn, schema)).value)

    # Act
    encoder, x = encode_training(train, schema)
    plain = auc(VAEConfig(**base), encoder, x)
    prepared = prepare_training(train, schema, model="vae", epsilon=1.0, delta=None, rare_k=None, public_schema=True)
    private = auc(
        VAEConfig(**{**base, "epochs": 10}, **prepared.model_options({})),
        prepared.private.encoder,
        prepared.private.encoded,
    )

    # Assert
    assert plain > 0.53
    assert private < plain - 0.02
    assert np.isfinite(private)
