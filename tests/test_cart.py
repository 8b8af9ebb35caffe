"""The sequential-tree family on real and planted data: statistics, conditions, persistence, leaf sizes, no copying."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from synthgate.models.base import make_generator
from synthgate.models.cart import CART, CARTConfig
from synthgate.models.encoders.table import TableEncoder
from synthgate.schemas.table import infer_schema
from synthgate.tasks.sample import encode_conditions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def penguins_fitted(penguins):
    encoder = TableEncoder(infer_schema(penguins)).fit(penguins)
    x = encoder.transform(penguins)
    return encoder, x, CART(spans=encoder.spans_).fit(x)


def test_species_shares_and_body_mass_by_species_follow_the_real_table(penguins_fitted, penguins):
    # Arrange
    encoder, _, model = penguins_fitted
    n = 4000

    # Act
    rows = encoder.inverse_transform(model.sample(n, generator=make_generator(0)))

    # Assert: shares within 4 standard errors of a sample of n; the first column is drawn from its marginal.
    real = penguins["species"].value_counts(normalize=True)
    synthetic = rows["species"].value_counts(normalize=True)
    for species, p in real.items():
        assert abs(synthetic[species] - p) <= 4 * np.sqrt(p * (1 - p) / n)
    # Per-species means: Gentoo are ~1.3 kg heavier; leaves of >= 20 rows smoothed toward the marginal shrink
    # the gap a little, never by the 1.3 kg that would mean body mass ignored species.
    real_mass = penguins.groupby("species")["body_mass_g"].mean()
    mass = rows.groupby("species")["body_mass_g"].mean()
    assert (mass - real_mass).abs().max() < 250
    assert mass["Gentoo"] - mass[["Adelie", "Chinstrap"]].max() > 800
    # Uniform draws within bins and >= 20-row leaves attenuate a correlation of 0.87; they must not erase it.
    real_r = penguins["flipper_length_mm"].corr(penguins["body_mass_g"])
    assert real_r - 0.15 < rows["flipper_length_mm"].corr(rows["body_mass_g"]) <= real_r + 0.05


def test_conditions_are_honoured_exactly_and_move_earlier_columns(penguins_fitted, penguins):
    # Arrange: species comes first in table order; island and body mass are fixed after it.
    encoder, x, model = penguins_fitted
    cond = encode_conditions(encoder, {"island": "Torgersen"})
    mass = encoder.span_of("body_mass_g", "value").start
    row = int(np.flatnonzero(penguins["body_mass_g"].to_numpy() == 3650.0)[0])
    cond[mass] = x[row, mass]  # numbers are conditioned by their encoded value

    # Act
    rows = encoder.inverse_transform(model.sample(300, conditions=cond, generator=make_generator(0)))

    # Assert: every row as asked, and Torgersen is home to Adelie penguins only in the real table.
    assert (rows["island"] == "Torgersen").all()
    assert (rows["body_mass_g"] == 3650.0).all()
    assert (rows["species"] == "Adelie").mean() > 0.9


def test_save_load_gives_the_same_rows_under_a_seed(penguins_fitted, tmp_path):
    # Arrange
    _, _, model = penguins_fitted

    # Act
    first = model.sample(100, generator=make_generator(3))
    again = model.sample(100, generator=make_generator(3))
    other = model.sample(100, generator=make_generator(4))
    model.save(tmp_path / "cart")
    reloaded = CART.load(tmp_path / "cart").sample(100, generator=make_generator(3))

    # Assert
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(first, reloaded)


def test_no_leaf_is_smaller_than_the_minimum(penguins):
    # Arrange: 1% of 3000 rows is above the 20-row floor, so the share decides.
    frame = penguins.sample(3000, replace=True, random_state=0).reset_index(drop=True)
    encoder = TableEncoder(infer_schema(frame)).fit(frame)

    # Act
    model = CART(CARTConfig(min_leaf=20, min_leaf_share=0.01), spans=encoder.spans_).fit(encoder.transform(frame))

    # Assert
    assert model.min_leaf_ == 30
    assert any(tree.depth > 0 for tree in model.trees_)
    for tree in model.trees_:
        leaves = tree.left < 0
        assert (tree.sizes[leaves] >= model.min_leaf_).all()


def duplicated_table(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Low-cardinality columns plus a two-decimal income, with a third of the rows exact copies of others."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "region": rng.choice(["north", "south", "east"], n),
            "plan": rng.choice(["a", "b", "c", "d"], n),
            "children": rng.integers(0, 4, n),
            "income": rng.lognormal(10, 0.5, n).round(2),
        }
    )
    copies = frame.sample(n // 2, random_state=seed)
    return pd.concat([frame, copies]).sample(frac=1, random_state=seed).reset_index(drop=True)


def exact_match_rate(rows: pd.DataFrame, reference: pd.DataFrame) -> float:
    """Share of `rows` equal, in every column, to some row of `reference`."""
    keys = set(map(tuple, reference.astype(str).to_numpy()))
    return float(np.mean([tuple(r) in keys for r in rows.astype(str).to_numpy()]))


def test_duplicated_rows_are_not_copied_more_than_the_holdout_matches(penguins):
    # Arrange: duplicates make the holdout itself match training rows; a copier would match far more often.
    frame = duplicated_table()
    holdout = frame.sample(frac=0.2, random_state=1)
    train = frame.drop(holdout.index).reset_index(drop=True)
    encoder = TableEncoder(infer_schema(train)).fit(train)
    model = CART(spans=encoder.spans_).fit(encoder.transform(train))

    # Act
    rows = encoder.inverse_transform(model.sample(len(holdout), generator=make_generator(0)))

    # Assert
    holdout_rate = exact_match_rate(holdout, train)
    assert holdout_rate > 0.2  # the planted duplicates are there to be copied
    assert exact_match_rate(rows[train.columns], train) <= holdout_rate / 2
