"""Atomic Parquet publishing with metadata, and sampling that guarantees its conditions."""

from __future__ import annotations

import pandas as pd
import pytest

from synthgate.models.encoders import TableEncoder
from synthgate.models.gmm import GaussianMixture
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.table import infer_schema
from synthgate.tasks.publish import read_metadata, write_parquet
from synthgate.tasks.sample import sample_rows


def test_parquet_round_trip_keeps_dtypes_and_metadata(penguins, tmp_path, output_metadata):
    path = tmp_path / "out" / "p.parquet"
    write_parquet(penguins, path, output_metadata(penguins))
    pd.testing.assert_frame_equal(pd.read_parquet(path), penguins)
    meta = read_metadata(path)
    assert meta.run_id == "r1" and meta.gates.metric("column_shapes").passed is True
    assert [p.name for p in path.parent.iterdir()] == ["p.parquet"]  # no temp file left


def test_failed_write_leaves_nothing_behind(tmp_path, output_metadata):
    bad = pd.DataFrame({"a": [object(), object()]})  # arrow cannot convert arbitrary objects
    with pytest.raises(Exception):  # noqa: B017 - any arrow error; the point is what is left on disk
        write_parquet(bad, tmp_path / "x.parquet", output_metadata(pd.DataFrame({"a": [1, 2]})))
    assert list(tmp_path.iterdir()) == []


def test_read_metadata_of_a_foreign_file_says_so(penguins, tmp_path):
    penguins.to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(InvalidInputError, match="no synthgate metadata"):
        read_metadata(tmp_path / "plain.parquet")


@pytest.fixture(scope="module")
def fitted(penguins):
    encoder = TableEncoder(infer_schema(penguins)).fit(penguins)
    return GaussianMixture(spans=encoder.spans_).fit(encoder.transform(penguins)), encoder


def test_conditions_hold_for_every_row(fitted, penguins):
    model, encoder = fitted
    rows = sample_rows(model, encoder, 300, seed=0, conditions={"species": "Chinstrap", "sex": "female", "year": 2008})
    assert len(rows) == 300
    assert (rows.species == "Chinstrap").all() and (rows.sex == "female").all() and (rows.year == 2008).all()
    assert rows.dtypes.to_dict() == penguins.dtypes.to_dict()


def test_numeric_condition_is_set_exactly(fitted):
    model, encoder = fitted
    rows = sample_rows(model, encoder, 50, seed=0, conditions={"body_mass_g": 4000.0})
    assert (rows.body_mass_g == 4000.0).all()


def test_unknown_condition_value_is_refused(fitted):
    model, encoder = fitted
    with pytest.raises(InvalidInputError, match="Emperor"):
        sample_rows(model, encoder, 10, seed=0, conditions={"species": "Emperor"})


def test_balance_equalises_classes(fitted, penguins):
    model, encoder = fitted
    rows = sample_rows(model, encoder, 300, seed=0, balance="species", rows_per_class=120, train=penguins)
    assert rows.species.value_counts().to_dict() == {"Adelie": 120, "Chinstrap": 120, "Gentoo": 120}


def test_sampling_is_reproducible_under_a_seed(fitted):
    model, encoder = fitted
    a = sample_rows(model, encoder, 100, seed=4)
    b = sample_rows(model, encoder, 100, seed=4)
    c = sample_rows(model, encoder, 100, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
