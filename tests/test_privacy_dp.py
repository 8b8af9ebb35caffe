"""DP-SGD through Opacus (Abadi et al. 2016) with an RDP accountant (Mironov 2017)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from synthgate.models.privacy import default_delta, index_loader, make_private, rdp_epsilon
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.table import ColumnKind, infer_schema
from synthgate.tasks.dp_preprocess import prepare_training
from synthgate.tasks.split import split_holdout
from synthgate.tasks.validate import valid_row_share

warnings.filterwarnings("ignore", category=UserWarning)


def _assert_same_draws(model, loaded, n: int, *, seed: int) -> None:
    """A saved and reloaded model draws exactly what the fitted one draws from the same seed."""
    same = [m.sample(n, generator=torch.Generator().manual_seed(seed)) for m in (model, loaded)]
    assert torch.equal(*same)


def _private_penguins(penguins, model: str, *, public_schema: bool):
    """Complete penguin rows, 80% of them prepared for `model` at epsilon 1 as the flow does; returns (train, prepared)."""
    frame = penguins.dropna().reset_index(drop=True)
    train, _ = split_holdout(frame, fraction=0.2, seed=0)
    schema = infer_schema(frame)
    return train, prepare_training(
        train, schema, model=model, epsilon=1.0, delta=None, rare_k=None, public_schema=public_schema
    )


@pytest.mark.slow
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


def test_a_model_without_a_private_path_refuses_epsilon_with_a_clear_message(penguins):
    frame = penguins.dropna().reset_index(drop=True)
    with pytest.raises(InvalidInputError, match=r"'cart' has none yet; choose --model gmm, .*marginal"):
        prepare_training(
            frame, infer_schema(frame), model="cart", epsilon=1.0, delta=None, rare_k=None, public_schema=False
        )


@pytest.mark.slow
def test_dp_autoencoder_spends_within_budget_and_round_trips(penguins, tmp_path):
    # Arrange: DP-SGD on the networks (80% of the budget), then DP-EM on the bounded codes (20%).
    from synthgate.models.registry import build_model, load_model

    _, prepared = _private_penguins(penguins, "autoencoder", public_schema=True)
    private = prepared.private
    options = prepared.model_options({"epochs": 3, "batch_size": 64})

    # Act
    model = build_model("autoencoder", spans=private.encoder.spans_, device="cpu", options=options)
    model.fit(private.encoded)
    synthetic = private.encoder.inverse_transform(model.sample(200, generator=torch.Generator().manual_seed(0)))
    model.save(tmp_path / "ae")
    loaded = load_model("autoencoder", tmp_path / "ae", device="cpu")

    # Assert
    assert model.privacy_["epsilon"] <= 1.0 + 1e-6 and model.privacy_["latent_epsilon"] == pytest.approx(0.2)
    assert prepared.spent(model)[0] <= 1.0 + 1e-6
    assert valid_row_share(synthetic, prepared.schema) == 1.0
    assert loaded.privacy_ == model.privacy_
    _assert_same_draws(model, loaded, 20, seed=1)


@pytest.mark.slow
def test_dp_gmm_at_epsilon_one_is_schema_valid_and_within_budget(penguins):
    # Arrange: DP bounds from 10% of the budget, DP-EM with the rest (the flow builds prepared.model_name("gmm")).
    from synthgate.models.registry import build_model

    train, prepared = _private_penguins(penguins, "gmm", public_schema=False)
    private = prepared.private
    name = prepared.model_name("gmm")

    # Act
    model = build_model(name, spans=private.encoder.spans_, device="cpu", options=prepared.model_options({}))
    model.fit(private.encoded)
    synthetic = private.encoder.inverse_transform(model.sample(300, generator=torch.Generator().manual_seed(0)))
    eps, delta = prepared.spent(model)

    # Assert
    assert name == "gmm_dp"
    assert model.privacy_["epsilon"] <= private.train_epsilon + 1e-6
    assert eps <= 1.0 + 1e-6 and delta < 1 / len(train)
    assert valid_row_share(synthetic, prepared.schema) == 1.0


def test_dp_gmm_recovers_well_separated_means_at_epsilon_ten():
    # Arrange: 20k rows from two tight 2-D clusters at (-1, -1) and (1, 1); the DP init is random, not k-means++.
    from synthgate.models.gmm_dp import DPGaussianMixture, DPGMMConfig

    gen = torch.Generator().manual_seed(0)
    centers = torch.tensor([[-1.0, -1.0], [1.0, 1.0]])
    labels = torch.randint(2, (20_000,), generator=gen)
    x = centers[labels] + 0.25 * torch.randn(20_000, 2, generator=gen)

    # Act
    model = DPGaussianMixture(DPGMMConfig(n_components=2, epsilon=10.0), device="cpu").fit(x)
    order = model.means_[:, 0].argsort()

    # Assert
    assert model.privacy_["epsilon"] <= 10.0 + 1e-6
    assert torch.allclose(model.means_[order].float(), centers, atol=0.1)
    assert torch.allclose(model.weights_[order].float(), torch.tensor([0.5, 0.5]), atol=0.05)


def test_dp_gmm_refuses_a_bic_search_and_round_trips(tmp_path):
    # Arrange
    from synthgate.models.gmm_dp import DPGaussianMixture, DPGMMConfig
    from synthgate.models.registry import load_model

    x = torch.randn(2_000, 3, generator=torch.Generator().manual_seed(0))
    model = DPGaussianMixture(DPGMMConfig(n_components=2, epsilon=3.0), device="cpu").fit(x)

    # Act
    model.save(tmp_path / "m")
    loaded = load_model("gmm_dp", tmp_path / "m")

    # Assert
    with pytest.raises(InvalidInputError, match="n_components"):
        DPGaussianMixture(DPGMMConfig(n_components=None), device="cpu").fit(x)
    assert loaded.config == model.config and loaded.privacy_ == model.privacy_
    _assert_same_draws(model, loaded, 50, seed=3)


@pytest.mark.slow
def test_dp_vae_at_epsilon_one_is_schema_valid(penguins):
    # Arrange
    from synthgate.models.vae import VAE, VAEConfig

    train, prepared = _private_penguins(penguins, "vae", public_schema=True)
    private = prepared.private
    config = VAEConfig(**prepared.model_options({"epochs": 5, "batch_size": 64}))

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
    # Arrange: a small table and an autoencoder whose latent mixture has a component for about every three training
    # rows, without code noise: it samples near-copies of its training rows, the case DP is for. Measured: MIA AUC
    # 0.737 plain; 0.546 / 0.504 with DP at epsilon 1 (seeds 0 / 1). A VAE's prior draws fall between training codes,
    # so even an overfitted one scored only 0.52-0.57 here: too close to 0.5 to show a difference on 54 holdout rows.
    from synthgate.models.autoencoder import Autoencoder, AutoencoderConfig
    from synthgate.tasks.preprocess import encode_training
    from synthgate.tasks.privacy import mia_auc, privacy_distances

    frame = penguins.dropna().reset_index(drop=True)
    schema = infer_schema(frame)
    train, holdout = split_holdout(frame, fraction=0.2, seed=0)

    def auc(config: AutoencoderConfig, encoder, x) -> float:
        model = Autoencoder(config, spans=encoder.spans_).fit(x)
        syn = encoder.inverse_transform(model.sample(len(train), generator=torch.Generator().manual_seed(1)))
        return float(mia_auc(privacy_distances(train, holdout, syn, schema)).value)

    # Act
    encoder, x = encode_training(train, schema)
    memorising = {"epochs": 200, "batch_size": 50, "n_components": 80, "latent_noise": 0.0}
    plain = auc(AutoencoderConfig(**memorising, val_fraction=0.0, patience=None), encoder, x)
    prepared = prepare_training(
        train, schema, model="autoencoder", epsilon=1.0, delta=None, rare_k=None, public_schema=True
    )
    options = prepared.model_options({"epochs": 10, "batch_size": 100})
    private = auc(AutoencoderConfig(**options), prepared.private.encoder, prepared.private.encoded)

    # Assert
    print(f"MIA AUC plain {plain:.3f}, DP epsilon 1 {private:.3f}")
    assert plain > 0.65
    assert private < plain - 0.1


def test_a_direct_private_config_trains_with_the_settings_the_cli_uses():
    # Arrange
    from synthgate.models.gan import GAN, GANConfig
    from synthgate.models.vae import VAE, VAEConfig
    from synthgate.tasks.dp_preprocess import PreparedTraining, PrivateEncoding

    budget = PrivateEncoding(None, None, None, 2.7, 1e-6, 0.3, 1e-7)  # what `prepare_training` hands the flow
    cli_options = PreparedTraining(None, None, budget, {}).model_options({"epochs": 7})

    # Act
    direct = GAN(GANConfig(epsilon=2.7, delta=1e-6, epochs=7)).cfg
    through_cli = GAN(GANConfig(**cli_options)).cfg
    plain = GAN(GANConfig(epochs=7)).cfg

    # Assert: the private settings apply to every field left at its default, the caller's epochs win, and a
    # non-private config is untouched.
    assert direct == through_cli
    assert (direct.pac, direct.private_loss, direct.batch_size, direct.lr) == (1, "logistic", 2000, 5e-4)
    assert tuple(direct.critic_hidden) == (128, 128) and direct.epochs == 7
    assert plain == GANConfig(epochs=7)
    assert VAE(VAEConfig(epsilon=1.0)).cfg.epochs == VAEConfig.PRIVATE["epochs"]


def test_a_schema_inferred_from_the_data_is_stamped_and_a_private_run_says_its_domain_is_outside_epsilon(
    penguins, tmp_path
):
    # Arrange: `synthgate schema infer` writes the YAML a user would pass back as --schema
    from typer.testing import CliRunner

    from synthgate.flows.cli import app
    from synthgate.schemas.table import TableSchema
    from synthgate.tasks.ingest import data_hash, read_table
    from synthgate.tasks.preprocess import is_contract

    source, path = tmp_path / "penguins.csv", tmp_path / "schema.yaml"
    penguins.to_csv(source, index=False)
    assert CliRunner().invoke(app, ["schema", "infer", str(source), "-o", str(path)]).exit_code == 0
    stamped = TableSchema.from_yaml(path)
    train, _ = split_holdout(penguins, fraction=0.2, seed=0)

    # Act
    prepared = prepare_training(
        train, stamped, model="gmm", epsilon=1.0, delta=None, rare_k=None, public_schema=is_contract(path)
    )

    # Assert: the stamp is the rows' hash, the file is a contract, and the run discloses where its domain came from
    assert stamped.inferred_from == data_hash(read_table(str(source)))
    assert any("outside epsilon" in note and stamped.inferred_from[:12] in note for note in prepared.notes)


def test_schema_overrides_leave_the_domain_to_the_private_rows_so_it_is_bought_with_budget(penguins, tmp_path):
    # Arrange: an overrides file names one column; the others' bounds and categories come from the rows
    from synthgate.tasks.preprocess import is_contract

    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("columns:\n  year: {kind: integer, categories: null}\n")
    contract = tmp_path / "contract.yaml"
    infer_schema(penguins).to_yaml(contract)

    # Act / Assert: only a complete contract counts as public; overrides spend the DP share on the domain
    assert not is_contract(overrides) and is_contract(contract) and not is_contract(None)
    frame = penguins.dropna().reset_index(drop=True)
    prepared = prepare_training(
        frame, infer_schema(frame), model="gmm", epsilon=1.0, delta=None, rare_k=None,
        public_schema=is_contract(overrides),
    )  # fmt: skip
    assert prepared.private.preprocess_epsilon > 0


# ------------------------------------------------------------------------------------- schema infer --epsilon
def test_a_domain_released_under_dp_lists_no_exact_counts_and_folds_what_it_dropped(penguins):
    from synthgate.schemas.table import RARE_LABEL
    from synthgate.tasks.dp_preprocess import infer_private_schema
    from synthgate.tasks.validate import validate_table

    frame = penguins.copy()
    frame.loc[:2, "island"] = "Nowhere"  # a level held by 3 rows: far under the noise at epsilon 1

    schema = infer_private_schema(frame, name="penguins", epsilon=1.0, seed=0)

    assert schema.domain_epsilon == 1.0 and schema.domain_delta == pytest.approx(1 / (10 * len(frame)))
    assert schema.n_rows is None and schema.inferred_from is None and schema.constraints == []
    island = schema.column("island")
    assert "Nowhere" not in island.categories and RARE_LABEL in island.categories
    assert not any(ch.isdigit() for c in schema.columns for ch in (c.reason or ""))  # no counts in the notes
    year = schema.column("year")  # three integer levels: a DP range, not a level list found under noise
    assert year.kind == ColumnKind.INTEGER and float(year.minimum).is_integer() and float(year.maximum).is_integer()
    mass = schema.column("body_mass_g")
    assert mass.minimum <= penguins["body_mass_g"].quantile(0.05) and mass.maximum >= penguins["body_mass_g"].quantile(
        0.95
    )

    # A later batch with a new island and a value beyond the DP range is not refused: the level joins the rare
    # bucket and the value is clipped when the run encodes it.
    batch = frame.copy()
    batch.loc[5, "island"] = "Atlantis"
    batch.loc[6, "body_mass_g"] = 99_999.0
    validate_table(batch, schema, source="batch.csv")
    prepared = prepare_training(
        batch, schema, model="marginal", epsilon=1.0, delta=None, rare_k=None, public_schema=True
    )
    assert prepared.train.loc[5, "island"] == RARE_LABEL
    assert any("released under DP by `synthgate schema infer --epsilon`" in note for note in prepared.notes)


def test_private_runs_do_not_suppress_levels_by_their_exact_counts(penguins):
    frame = penguins.copy()
    frame.loc[:1, "island"] = "Rare"  # two rows: exact-count suppression would reveal that in the value set
    schema = infer_schema(frame)

    prepared = prepare_training(
        frame, schema, model="marginal", epsilon=3.0, delta=None, rare_k=None, public_schema=True
    )

    assert prepared.suppressed == {}
    assert "Rare" in prepared.schema.column("island").categories
