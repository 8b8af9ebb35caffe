"""The fitted-model store: keys follow content, a stored model samples what the original did, a rerun skips training.

Also the retry condition: transient I/O is retried, bad input is not.
"""

from __future__ import annotations

import errno

import pandas as pd
import pytest
import sqlalchemy as sa
import torch

from synthgate.models.base import make_generator
from synthgate.models.encoders import TableEncoder
from synthgate.models.gmm import GaussianMixture, GMMConfig
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.request import RunRequest
from synthgate.schemas.table import infer_schema
from synthgate.tasks.cache import cache_root, load_cached, model_key, save_cached
from synthgate.tasks.ingest import data_hash
from synthgate.tasks.retry import is_transient


@pytest.fixture(scope="module")
def small(penguins) -> pd.DataFrame:
    return penguins.dropna().head(120).reset_index(drop=True)


def _request(tmp_path, **fields) -> RunRequest:
    return RunRequest(**{"input": "dataset:penguins", "output": tmp_path / "o.parquet", **fields})


def test_key_follows_data_schema_and_training_fields_only(small, tmp_path):
    # Arrange
    schema = infer_schema(small, name="penguins")
    base = _request(tmp_path)
    key = model_key(data_hash(small), schema, base, version="1")
    changed = small.copy()
    changed.loc[0, "bill_length_mm"] += 1.0

    # Act / Assert: sampling-only fields and the device keep the key; data, training fields and version change it
    assert model_key(data_hash(small.copy()), schema, base, version="1") == key
    for same in ({"rows": 10}, {"device": "cpu"}, {"output": tmp_path / "other.parquet"}, {"balance": "species"}):
        assert model_key(data_hash(small), schema, _request(tmp_path, **same), version="1") == key, same
    assert model_key(data_hash(changed), schema, base, version="1") != key
    for other in ({"seed": 1}, {"model": "vae"}, {"model_options": {"n_components": 2}}, {"holdout_fraction": 0.3}):
        assert model_key(data_hash(small), schema, _request(tmp_path, **other), version="1") != key, other
    assert model_key(data_hash(small), schema, base, version="2") != key
    assert model_key(data_hash(small), infer_schema(small, name="other"), base, version="1") != key


@pytest.mark.slow
def test_saved_entry_loads_and_samples_identically(small, tmp_path):
    # Arrange
    encoder = TableEncoder(infer_schema(small)).fit(small)
    model = GaussianMixture(GMMConfig(n_components=2), spans=encoder.spans_).fit(encoder.transform(small))

    # Act
    assert load_cached(tmp_path, "k1") is None  # miss
    entry = save_cached(tmp_path, "k1", model=model, encoder=encoder, name="gmm", fit_seconds=1.5)
    hit = load_cached(tmp_path, "k1", device="cpu")

    # Assert
    assert entry == tmp_path / "k1" and hit is not None and hit.name == "gmm" and hit.fit_seconds == 1.5
    expected = model.sample(50, generator=make_generator(3))
    torch.testing.assert_close(hit.model.sample(50, generator=make_generator(3)), expected)
    pd.testing.assert_frame_equal(hit.encoder.inverse_transform(expected), encoder.inverse_transform(expected))
    assert [p.name for p in tmp_path.iterdir()] == ["k1"]  # no staging directory left behind


def test_broken_entry_is_a_miss_and_is_removed(tmp_path):
    (tmp_path / "k2").mkdir()
    (tmp_path / "k2" / "entry.json").write_text('{"model": "gmm"}')  # model files missing
    assert load_cached(tmp_path, "k2") is None
    assert not (tmp_path / "k2").exists()


def test_cache_root_prefers_explicit_then_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHGATE_CACHE", str(tmp_path / "env"))
    assert cache_root(tmp_path / "x") == tmp_path / "x"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv("SYNTHGATE_CACHE")
    assert cache_root().parts[-3:] == ("synthgate", "models") or cache_root().name == "models"


def test_only_transient_errors_are_retried():
    unreachable = sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    wrapped = InvalidInputError("db: cannot reach the database")
    wrapped.__cause__ = unreachable
    assert is_transient(unreachable) and is_transient(wrapped)
    assert is_transient(ConnectionResetError()) and is_transient(OSError(errno.EIO, "I/O error"))
    assert not is_transient(InvalidInputError("x.csv: file not found"))
    assert not is_transient(FileNotFoundError(errno.ENOENT, "missing"))
    assert not is_transient(PermissionError(errno.EACCES, "denied"))
    assert not is_transient(ValueError("bad"))


def test_second_identical_run_reuses_the_model(prefect_harness, small, tmp_path):
    """The flow: a miss trains and stores; the same request again skips training; a new seed retrains."""
    from synthgate.flows.synthesize import synthesize_table
    from synthgate.tasks.score import find_model

    # Arrange
    source = tmp_path / "penguins.csv"
    small.to_csv(source, index=False)
    # A deliberately small model on 96 training rows: its pair trends against the 24-row holdout average 0.80, the
    # default threshold (20 sampling seeds: mean 0.795-0.797, below it 55-65% of the time), and fidelity is not what
    # this test is about.
    request = RunRequest(
        input=str(source),
        output=tmp_path / "a.parquet",
        model_options={"n_components": 2},
        thresholds={"pair_trends_min": None, "detection_auc_max": None},
    )
    store = tmp_path / "store"

    # Act
    first = synthesize_table(request, cache_dir=store)
    second = synthesize_table(request.model_copy(update={"output": tmp_path / "b.parquet"}), cache_dir=store)
    off = synthesize_table(request.model_copy(update={"output": tmp_path / "c.parquet"}), use_cache=False)

    # Assert
    assert (first.model_cache, second.model_cache, off.model_cache) == ("miss", "hit", "off")
    assert "fit_model" in first.metadata.timings and second.metadata.timings["fit_model"] == 0.0
    assert second.metadata.model_extra["model_cache"] == "hit" and second.metadata.model_extra["device"] == "cpu"
    assert second.metadata.model_extra["model_key"] == first.metadata.model_extra["model_key"]
    assert len([p for p in store.iterdir() if not p.name.startswith(".")]) == 1
    # same model, same seed: the reused model draws the very rows the trained one did
    pd.testing.assert_frame_equal(pd.read_parquet(first.output), pd.read_parquet(second.output))
    # the stored runs keep no copy beside their output; the --no-cache run does, where `score` looks for it
    assert not (tmp_path / "a.model").exists() and not (tmp_path / "b.model").exists()
    assert find_model(off.output, cache_dir=tmp_path / "empty-store").key == off.metadata.model_extra["model_key"]
