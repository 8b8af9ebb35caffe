"""Anomaly scores from fitted table models: each family's own score ranks planted anomalies above clean rows, and the
per-column parts name the column that was planted."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from bench.planted import plant_anomalies
from synthgate.models.encoders.table import TableEncoder
from synthgate.models.registry import build_model, normalization_for
from synthgate.models.scoring import column_parts
from synthgate.schemas.table import infer_schema

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = {"vae": {"epochs": 60}, "autoencoder": {"epochs": 60}, "arn": {"epochs": 20}, "gan": {"epochs": 5}}


def _split(frame: pd.DataFrame, n_train: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    return frame.iloc[order[:n_train]].reset_index(drop=True), frame.iloc[order[n_train:]].reset_index(drop=True)


def _fit(name: str, train: pd.DataFrame, schema):
    encoder = TableEncoder(schema, normalization=normalization_for(name)).fit(train)
    model = build_model(name, spans=encoder.spans_, device="cpu", options=FAST.get(name, {}))
    return encoder, model.fit(encoder.transform(train))


@pytest.fixture(scope="module")
def penguin_split(penguins):
    frame = penguins.dropna().reset_index(drop=True)
    return (*_split(frame, 230), infer_schema(frame))


def test_gmm_score_is_the_exact_negative_log_likelihood_and_its_parts_stay_below_it(penguin_split):
    # Arrange
    train, test, schema = penguin_split
    encoder, model = _fit("gmm", train, schema)
    x = encoder.transform(test)

    # Act
    scores = model.anomaly_scores(x)

    # Assert
    torch.testing.assert_close(scores.score, -model.score_samples(x).cpu(), rtol=0, atol=1e-9)
    # The parts leave out the component term sum_k r_k log(r_k / w_k) = KL(r || w) >= 0.
    assert bool((scores.features.sum(1) <= scores.score + 1e-9).all())


@pytest.mark.parametrize(("dataset", "n_train"), [("penguins", 230), ("wine", 120)])
def test_gmm_ranks_planted_anomalies_above_clean_rows(dataset, n_train, request):
    # Arrange
    frame = request.getfixturevalue(dataset).dropna().reset_index(drop=True)
    train, test = _split(frame, n_train)
    schema = infer_schema(frame)
    encoder, model = _fit("gmm", train, schema)
    planted, is_planted, _ = plant_anomalies(test, train, seed=1)

    # Act
    score = model.anomaly_scores(encoder.transform(planted)).score.numpy()

    # Assert
    assert roc_auc_score(is_planted, score) >= 0.90


@pytest.mark.parametrize(("dataset", "n_train"), [("wine", 120), ("breast_cancer", 340)])
def test_gmm_sees_a_mislabelled_class_on_a_small_table(dataset, n_train):
    # Arrange: a small table whose class moves the numbers; the plant gives some rows the least fitting class
    from synthgate.tasks.reader import load_dataset

    frame = load_dataset(dataset)
    train, test = _split(frame, n_train)
    encoder = TableEncoder(infer_schema(frame), normalization="standard").fit(train)
    planted, is_planted, kind = plant_anomalies(test, train, seed=0)
    swapped = (kind == "swapped") | ~is_planted
    aurocs = {}
    for regress in (None, False):  # the default, and the plain latent-class mixture as the contrast
        model = build_model("gmm", spans=encoder.spans_, device="cpu", options={"regress_on_levels": regress})
        model.fit(encoder.transform(train))

        # Act
        score = model.anomaly_scores(encoder.transform(planted)).score.numpy()
        aurocs[regress] = roc_auc_score(is_planted[swapped], score[swapped])

    # Assert: the level shifts tie the class to the numbers even where BIC gives only a component or two
    assert aurocs[None] >= aurocs[False] + 0.1, aurocs
    assert aurocs[None] >= (0.9 if dataset == "wine" else 0.7), aurocs


@pytest.mark.parametrize("name", ["gmm", "vae", "autoencoder", "arn", "cart"])
def test_the_top_column_names_the_value_multiplied_by_20(name, penguin_split):
    # Arrange
    train, test, schema = penguin_split
    encoder, model = _fit(name, train, schema)
    bad = test.copy()
    bad["body_mass_g"] = bad["body_mass_g"] * 20.0

    # Act
    clean = model.anomaly_scores(encoder.transform(test))
    scored = model.anomaly_scores(encoder.transform(bad))
    names, parts = column_parts(scored.features, encoder.spans_)

    # Assert
    assert roc_auc_score(np.r_[np.zeros(len(test)), np.ones(len(bad))], np.r_[clean.score, scored.score]) >= 0.95
    top = np.array(names)[parts.argmax(1)]
    assert (top == "body_mass_g").mean() >= 0.9


def test_gan_critic_scores_are_finite_and_repeatable(penguin_split):
    # Arrange
    train, test, schema = penguin_split
    encoder, model = _fit("gan", train, schema)
    x = encoder.transform(test)

    # Act
    first, second = model.anomaly_scores(x), model.anomaly_scores(x)

    # Assert
    assert torch.isfinite(first.score).all() and torch.equal(first.score, second.score)
    assert first.features.shape == x.shape


@pytest.mark.parametrize("name", ["vae", "arn", "cart"])
def test_a_row_scores_the_same_alone_and_in_a_batch(name, penguin_split):
    # Arrange
    train, test, schema = penguin_split
    encoder, model = _fit(name, train, schema)
    x = encoder.transform(test)

    # Act
    together, alone = model.anomaly_scores(x).score, model.anomaly_scores(x[5:6]).score

    # Assert
    torch.testing.assert_close(alone[0], together[5], rtol=1e-5, atol=1e-5)


def _vae_reference(model, x: torch.Tensor, n_samples: int = 8) -> torch.Tensor:
    """The importance-weighted bound written out directly: full log-softmax over every packed slot."""
    from synthgate.models.scoring import SCORE_SEED, _packed_nll

    layout, module = model.layout_, model.module_
    gen = torch.Generator().manual_seed(SCORE_SEED)
    eps = torch.randn(n_samples, 1, model.cfg.latent_dim, generator=gen).expand(n_samples, len(x), -1)
    with torch.no_grad():
        mu, logvar = module.encode(layout.encoder_input(x, model.cfg.fold_modes))
        std = torch.exp(0.5 * logvar)
        z = mu + std * eps
        out = module.decoder(z.reshape(-1, mu.shape[1])).reshape(n_samples, len(x), -1)
        log_px_z = -_packed_nll(layout, out, layout.pack(x)[None], model._sigma()).sum(-1)
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
        log_w = (log_px_z + log_pz - log_qz).double()
    return -(torch.logsumexp(log_w, 0) - np.log(n_samples))


def _arn_reference(model, x: torch.Tensor) -> torch.Tensor:
    """The chain rule column by column: -log softmax(head_j)[token_j] plus the tail beyond the range."""
    from synthgate.models.arn_tokens import to_tokens
    from synthgate.models.scoring import _range_tail

    tokens = torch.from_numpy(to_tokens(x.numpy(), model.columns_))[:, model.order_]
    with torch.no_grad():
        logits = model.module_(tokens)
    total = torch.zeros(len(x), dtype=torch.float64)
    for j, lg in enumerate(logits):
        total -= torch.log_softmax(lg.double(), 1).gather(1, tokens[:, j : j + 1])[:, 0]
        total += _range_tail(model.columns_[model.order_[j]], x.numpy())
    return total


@pytest.mark.parametrize(("name", "reference"), [("vae", _vae_reference), ("arn", _arn_reference)])
def test_batched_scores_equal_the_bound_written_out_directly(name, reference, penguin_split):
    # Arrange: a short fit is enough, the identity holds for any weights
    train, test, schema = penguin_split
    encoder = TableEncoder(schema, normalization=normalization_for(name)).fit(train)
    model = build_model(name, spans=encoder.spans_, device="cpu", options={"epochs": 3})
    model.fit(encoder.transform(train))
    x = encoder.transform(test)
    x[:5] *= 20  # far outside the training range too

    # Act
    scores = model.anomaly_scores(x)

    # Assert: the same value as the direct formula, and the parts on the columns still add up for the chain rule
    torch.testing.assert_close(scores.score, reference(model, x), rtol=1e-5, atol=1e-4)
    if name == "arn":
        torch.testing.assert_close(scores.features.sum(1), scores.score)


def _gmm_parts_reference(model, x: torch.Tensor) -> torch.Tensor:
    """Per-feature parts written out directly: each component's per-dimension terms and each group's log-probability,
    averaged over the row's responsibilities, one group and one component at a time."""
    from synthgate.models.gmm_math import group_onehot

    layout, rows = model.layout_, x.double()
    values = rows[:, layout.continuous]
    groups = group_onehot(rows, layout)
    if getattr(model, "coef_", None) is not None:
        values = values - torch.cat(groups, 1) @ model.coef_
    dims, joint = [], torch.log(model.weights_).repeat(len(x), 1)
    for k in range(model.n_components_):
        prec = model.precisions_cholesky_[k]
        diff = values - model.means_[k]
        dims.append(-0.5 * np.log(2 * np.pi) + torch.log(torch.diagonal(prec)) - 0.5 * diff * (diff @ prec @ prec.T))
        joint[:, k] += dims[k].sum(1)
    group_logp = [g @ torch.log(p).T for g, p in zip(groups, model.level_probs_, strict=True)]
    joint += sum(group_logp)
    resp = torch.softmax(joint, 1)
    parts = torch.zeros(rows.shape, dtype=torch.float64)
    parts[:, layout.continuous] = -sum(resp[:, k : k + 1] * dims[k] for k in range(model.n_components_))
    for idx, lp in zip(layout.groups, group_logp, strict=True):
        parts[:, idx[0]] = -(resp * lp).sum(1)
    return parts


def test_gmm_parts_equal_the_per_group_terms_written_out_directly(penguins):
    # Arrange: missing values kept, so missing flags (two-level groups) sit beside the categories
    train, test = _split(penguins, 230)
    encoder, model = _fit("gmm", train, infer_schema(penguins))
    x = encoder.transform(test)

    # Act
    parts = model.anomaly_scores(x).features

    # Assert
    assert any(model.layout_.binary) and not all(model.layout_.binary)
    torch.testing.assert_close(parts, _gmm_parts_reference(model, x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("activation", [torch.nn.GELU, torch.nn.SiLU, torch.nn.ReLU, lambda: torch.nn.LeakyReLU(0.2)])
def test_fused_inference_layers_give_the_layers_own_output(activation):
    # Arrange: an MLP as the models build them, in eval mode (dropout is the identity)
    from synthgate.models.inference import inference_steps, run_steps

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.LayerNorm(12), torch.nn.Linear(12, 32), activation(), torch.nn.Dropout(0.3), torch.nn.Linear(32, 5)
    ).eval()
    x = torch.randn(7, 40, 12)  # (columns, rows, width), as the arn runs it

    wide = copy.deepcopy(mlp).double()

    # Act
    with torch.inference_mode():
        fused, plain = run_steps(inference_steps(mlp), x), mlp(x)
        fallback = run_steps(inference_steps(wide), x.double())

    # Assert: the same values, and float64 layers (no fused op) run as they are
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fallback, wide(x.double()), rtol=0, atol=0)
