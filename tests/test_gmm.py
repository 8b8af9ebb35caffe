"""The Gaussian mixture recovers known structure, is deterministic under a seed, and saves/loads exactly."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from synthgate.models.encoders import TableEncoder
from synthgate.models.gmm import GaussianMixture, GMMConfig
from synthgate.schemas.errors import NotFittedError
from synthgate.schemas.table import infer_schema


def _two_component_data(n: int = 4000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[-4.0, 0.0], [3.0, 5.0]], dtype=torch.float64)
    covs = torch.tensor([[[1.0, 0.6], [0.6, 1.0]], [[2.0, -0.8], [-0.8, 0.5]]], dtype=torch.float64)
    first = (
        torch.randn(n * 3 // 10, 2, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(covs[0]).T + means[0]
    )
    second = (
        torch.randn(n * 7 // 10, 2, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(covs[1]).T + means[1]
    )
    return torch.cat([first, second]).float(), means, covs


@pytest.mark.slow
def test_recovers_means_covariances_and_weights_of_a_known_mixture():
    # Arrange
    x, means, covs = _two_component_data()

    # Act
    model = GaussianMixture(GMMConfig(reg_covar=1e-6)).fit(x)

    # Assert
    assert model.n_components_ == 2  # chosen by BIC
    order = torch.argsort(model.means_[:, 0])
    torch.testing.assert_close(model.means_[order], means, atol=0.15, rtol=0)
    torch.testing.assert_close(model.covariances_[order], covs, atol=0.15, rtol=0)
    torch.testing.assert_close(model.weights_[order], torch.tensor([0.3, 0.7], dtype=torch.float64), atol=0.02, rtol=0)


def test_samples_reproduce_the_fitted_mixture():
    x, _, _ = _two_component_data()
    model = GaussianMixture(GMMConfig(n_components=2)).fit(x)
    samples = model.sample(20_000, generator=torch.Generator().manual_seed(1)).double()
    torch.testing.assert_close(samples.mean(0), x.double().mean(0), atol=0.1, rtol=0)


def test_same_generator_same_rows_fresh_generator_new_rows(penguins):
    encoder = TableEncoder(infer_schema(penguins)).fit(penguins)
    model = GaussianMixture(spans=encoder.spans_).fit(encoder.transform(penguins))
    a = model.sample(50, generator=torch.Generator().manual_seed(3))
    b = model.sample(50, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    c, d = model.sample(50, generator=gen), model.sample(50, generator=gen)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(c, d)


def test_fit_is_deterministic_under_its_seed(penguins):
    encoder = TableEncoder(infer_schema(penguins)).fit(penguins)
    x = encoder.transform(penguins)
    first = GaussianMixture(GMMConfig(seed=5), spans=encoder.spans_).fit(x)
    second = GaussianMixture(GMMConfig(seed=5), spans=encoder.spans_).fit(x)
    assert torch.equal(first.means_, second.means_)


def test_categories_keep_their_joint_structure_with_numbers(penguins):
    # Arrange: body mass depends strongly on species (Gentoo are ~1.3 kg heavier)
    encoder = TableEncoder(infer_schema(penguins)).fit(penguins)
    model = GaussianMixture(spans=encoder.spans_).fit(encoder.transform(penguins))

    # Act
    synthetic = encoder.inverse_transform(model.sample(5000, generator=torch.Generator().manual_seed(0)))

    # Assert
    real = penguins.groupby("species")["body_mass_g"].mean()
    fake = synthetic.groupby("species")["body_mass_g"].mean()
    assert (fake - real).abs().max() < 150
    real_share = pd.crosstab(penguins.species, penguins.island, normalize=True)
    fake_share = pd.crosstab(synthetic.species, synthetic.island, normalize=True).reindex_like(real_share).fillna(0)
    assert 0.5 * (real_share - fake_share).abs().to_numpy().sum() < 0.06  # total variation of the joint


def test_condition_on_a_category_is_exact_and_shifts_the_numbers(penguins):
    encoder = TableEncoder(infer_schema(penguins)).fit(penguins)
    model = GaussianMixture(spans=encoder.spans_).fit(encoder.transform(penguins))
    condition = torch.full((encoder.n_features_,), float("nan"))
    span = encoder.span_of("species")
    condition[span.start : span.stop] = torch.tensor([0.0, 0.0, 1.0])  # Gentoo

    rows = encoder.inverse_transform(
        model.sample(500, conditions=condition, generator=torch.Generator().manual_seed(0))
    )

    assert (rows.species == "Gentoo").all()
    assert abs(rows.body_mass_g.mean() - penguins.loc[penguins.species == "Gentoo", "body_mass_g"].mean()) < 120
    assert (rows.island == "Biscoe").mean() > 0.95  # Gentoo only live on Biscoe


def test_save_load_gives_identical_samples(penguins, tmp_path):
    encoder = TableEncoder(infer_schema(penguins)).fit(penguins)
    model = GaussianMixture(spans=encoder.spans_).fit(encoder.transform(penguins))
    model.save(tmp_path / "gmm")
    loaded = GaussianMixture.load(tmp_path / "gmm")
    a = model.sample(100, generator=torch.Generator().manual_seed(9))
    b = loaded.sample(100, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_sample_before_fit_raises():
    with pytest.raises(NotFittedError, match="fit"):
        GaussianMixture().sample(3)


def _shifted_table():
    """8 numbers, 4 categories; category j moves number j by 15 per level code (bench.tables.mixed_table)."""
    from bench.tables import mixed_table

    frame = mixed_table(6_000, 12, seed=0)
    encoder = TableEncoder(infer_schema(frame), normalization="standard").fit(frame)
    return frame, encoder


@pytest.mark.slow
@pytest.mark.parametrize("regress", [True, False])
def test_level_shifts_reproduce_category_dependent_means(regress):
    # Arrange: 4 categories, each shifting one number; all 4 x 3..7 level combinations would need a plain mixture
    # component each
    frame, encoder = _shifted_table()
    model = GaussianMixture(GMMConfig(regress_on_levels=None if regress else False), spans=encoder.spans_)
    model.fit(encoder.transform(frame))

    # Act
    synthetic = encoder.inverse_transform(model.sample(len(frame), generator=torch.Generator().manual_seed(0)))

    # Assert: the mean of num_j per level of cat_j, in units of num_j's standard deviation
    errors = []
    for j in range(4):
        real = frame.groupby(f"cat_{j}")[f"num_{j}"].mean()
        fake = synthetic.groupby(f"cat_{j}")[f"num_{j}"].mean().reindex(real.index)
        errors.append(float(((fake - real).abs() / frame[f"num_{j}"].std()).max()))
    if regress:  # the default from 2,000 rows: shifts shared by the components
        assert model.coef_ is not None
        assert max(errors) < 0.1, errors
    else:  # the plain latent-class mixture: the test can fail, and does for the model without shifts
        assert model.coef_ is None
        assert max(errors) > 0.1, errors


def test_condition_on_a_value_reweights_the_levels_that_shift_it():
    # Arrange
    frame, encoder = _shifted_table()
    model = GaussianMixture(spans=encoder.spans_).fit(encoder.transform(frame))
    high = float(frame["num_0"].quantile(0.95))
    condition = torch.full((encoder.n_features_,), float("nan"))
    span = encoder.span_of("num_0")
    condition[span.start] = float(encoder.transform(frame.assign(num_0=high).head(1))[0, span.start])

    # Act
    rows = encoder.inverse_transform(
        model.sample(2_000, conditions=condition, generator=torch.Generator().manual_seed(0))
    )

    # Assert: the value is held, and cat_0's upper levels (which raise num_0) become more frequent, as in the data
    assert rows["num_0"].sub(high).abs().max() < 0.01
    code = rows["cat_0"].str.removeprefix("level_").astype(int)
    real_code = frame["cat_0"].str.removeprefix("level_").astype(int)
    near = real_code[(frame["num_0"] - high).abs() < frame["num_0"].std() / 4]
    assert code.mean() > real_code.mean() + 0.3
    assert abs(code.mean() - near.mean()) < 0.25


def test_a_small_table_keeps_its_class_in_the_numbers(wine):
    # Arrange: 120 rows, where BIC gives the mixture two components for three classes
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    order = torch.randperm(len(wine), generator=torch.Generator().manual_seed(0)).numpy()
    train, test = wine.iloc[order[:120]], wine.iloc[order[120:]]
    encoder = TableEncoder(infer_schema(wine), normalization="standard").fit(train)
    model = GaussianMixture(spans=encoder.spans_).fit(encoder.transform(train))

    # Act
    synthetic = encoder.inverse_transform(model.sample(1_000, generator=torch.Generator().manual_seed(0)))

    # Assert: a classifier trained on the synthetic rows names held-out rows' class (without the level shifts, about
    # 0.65: two components cannot carry three classes)
    numbers = wine.columns.drop("target")
    clf = make_pipeline(StandardScaler(), LogisticRegression()).fit(synthetic[numbers], synthetic["target"])
    assert model.coef_ is not None
    assert clf.score(test[numbers], test["target"]) > 0.85


def test_the_component_search_reports_each_count_and_stops_when_told():
    class OverBudgetError(RuntimeError):
        pass

    # Arrange: a callback that lets two component counts through, then says the time is up
    x, _, _ = _two_component_data(n=400)
    seen = []

    def watch(report):
        seen.append(report.epoch)
        if report.epoch == 2:
            raise OverBudgetError

    # Act / Assert
    with pytest.raises(OverBudgetError):
        GaussianMixture(GMMConfig(seed=0)).fit(x, progress=watch)
    assert seen == [1, 2]
