"""Scale behaviour without timing anything: batched ingest equals whole-table ingest, row groups equal one-shot output,
and generating millions of rows keeps memory bounded."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from bench.tables import mixed_table
from synthgate.models.encoders import TableEncoder
from synthgate.models.gmm import GaussianMixture, GMMConfig
from synthgate.schemas.errors import ValidationFailedError
from synthgate.schemas.table import infer_schema
from synthgate.tasks.ingest import data_hash, read_table
from synthgate.tasks.publish import StagedParquet, read_metadata, write_parquet
from synthgate.tasks.sample import sample_rows, stream_output
from synthgate.tasks.scan import UniformSample, profile_source, scan_source
from synthgate.tasks.validate import validate_table

ROOT = Path(__file__).resolve().parents[1]


def _table() -> pd.DataFrame:
    frame = mixed_table(600, 8, seed=3)
    frame["row_id"] = np.arange(len(frame))
    frame["when"] = pd.date_range("2024-01-01", periods=len(frame), freq="h")
    frame["flag"] = frame["num_0"] > 100
    frame["email"] = [f"person{i}@example.org" for i in range(len(frame))]
    return frame


def _sources(frame: pd.DataFrame, tmp_path: Path) -> list[tuple[str, str | None]]:
    frame.to_parquet(tmp_path / "t.parquet", row_group_size=97)
    frame.to_csv(tmp_path / "t.csv", index=False)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 't.db'}")
    frame.to_sql("t", engine, index=False)
    engine.dispose()
    return [
        (str(tmp_path / "t.parquet"), None),
        (str(tmp_path / "t.csv"), None),
        (f"sqlite:///{tmp_path / 't.db'}", "t"),
    ]


@pytest.mark.slow
def test_batched_ingest_gives_the_whole_table_schema_hash_and_rows(tmp_path):
    frame = _table()
    for source, table in _sources(frame, tmp_path):
        # Act
        whole = read_table(source, table=table)
        profiled = profile_source(source, table=table, name="t", batch_rows=53)
        scanned = scan_source(source, profiled, table=table, batch_rows=53, max_rows=10_000)

        # Assert
        assert profiled == infer_schema(whole, name="t"), source
        assert scanned.data_hash == data_hash(whole) and scanned.n_rows == len(frame)
        pd.testing.assert_frame_equal(scanned.sample, whole)  # a table under max_rows is kept whole, in order


@pytest.mark.slow
def test_batched_validation_reports_what_whole_table_validation_reports(tmp_path):
    # Arrange: a schema from clean rows, then data that breaks ranges, value sets and uniqueness across batches
    frame = _table()
    schema = infer_schema(frame, name="t")
    bad = frame.copy()
    bad.loc[[5, 300, 590], "num_1"] = 1e6
    bad.loc[[7, 450], "cat_0"] = "unknown"
    bad.loc[500, "row_id"] = 3  # a duplicate of a row in another batch
    bad.to_parquet(tmp_path / "bad.parquet")

    # Act
    with pytest.raises(ValidationFailedError) as whole:
        validate_table(read_table(str(tmp_path / "bad.parquet")), schema, source="bad")
    with pytest.raises(ValidationFailedError) as batched:
        scan_source(str(tmp_path / "bad.parquet"), schema, display="bad", batch_rows=64)

    # Assert: same rules, columns and counts; the same message wherever examples come in table order
    def key(error):
        return sorted((f.column, f.rule, f.count) for f in error.value.failures)

    assert key(batched) == key(whole)
    by_rule = {f.rule: str(f) for f in whole.value.failures if "unique" not in f.rule}
    assert by_rule == {f.rule: str(f) for f in batched.value.failures if "unique" not in f.rule}


def test_uniform_sample_does_not_depend_on_the_batch_size():
    frame = pd.DataFrame({"x": np.arange(10_000)})
    samples = []
    for size in (100, 777, 10_000):
        sample = UniformSample(500, seed=4)
        for start in range(0, len(frame), size):
            sample.add(frame.iloc[start : start + size])
        samples.append(sample.result())
    assert all(s.equals(samples[0]) for s in samples) and len(samples[0]) == 500
    assert samples[0]["x"].is_monotonic_increasing and samples[0]["x"].between(0, 9_999).all()


@pytest.mark.slow
def test_row_group_output_equals_one_shot_output(tmp_path, output_metadata):
    # Arrange: a fitted GMM; integer identifiers are regenerated, so they must continue across batches too
    frame = mixed_table(800, 6, seed=1)
    frame["row_id"] = np.arange(len(frame))
    schema = infer_schema(frame)
    encoder = TableEncoder(schema).fit(frame)
    model = GaussianMixture(GMMConfig(n_components=2), spans=encoder.spans_).fit(encoder.transform(frame))
    n = 150_000  # three rounds of the sampler's 65,536 rows: batches must be those rounds to share the random stream
    from synthgate.tasks.protect import complete_output

    one_shot = complete_output(sample_rows(model, encoder, n, seed=9), schema, seed=9)
    write_parquet(one_shot, tmp_path / "one.parquet", output_metadata(one_shot))

    # Act: the same seed, streamed batch by batch into row groups
    staged = StagedParquet(tmp_path / "many.parquet")
    kept = stream_output(model, encoder, schema, n, staged, seed=9, keep_rows=1_500)
    staged.commit(output_metadata(one_shot))

    # Assert
    streamed = pd.read_parquet(tmp_path / "many.parquet")
    assert pq.ParquetFile(tmp_path / "many.parquet").metadata.num_row_groups == 3
    pd.testing.assert_frame_equal(streamed, pd.read_parquet(tmp_path / "one.parquet"))
    pd.testing.assert_frame_equal(kept, one_shot.iloc[:1_500])
    assert read_metadata(tmp_path / "many.parquet").run_id == "r1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.parquet", "one.parquet"]  # no temp file left


def test_discarded_output_publishes_nothing(tmp_path):
    staged = StagedParquet(tmp_path / "out.parquet")
    staged.write(pd.DataFrame({"a": [1, 2]}))
    staged.discard()
    assert list(tmp_path.iterdir()) == []


MEMORY_SCRIPT = """
import sys, tracemalloc
sys.path.insert(0, {root!r})
import numpy as np, pandas as pd, torch
torch.set_num_threads(1)
from synthgate.models.encoders import TableEncoder
from synthgate.models.gmm import GaussianMixture, GMMConfig
from synthgate.schemas.table import infer_schema
from synthgate.tasks.publish import StagedParquet
from synthgate.tasks.sample import stream_output
rng = np.random.default_rng(0)
frame = pd.DataFrame({{"a": rng.normal(size=2000).round(2), "b": rng.choice(["x", "y", "z"], 2000)}})
schema = infer_schema(frame)
encoder = TableEncoder(schema).fit(frame)
model = GaussianMixture(GMMConfig(n_components=2), spans=encoder.spans_).fit(encoder.transform(frame))
tracemalloc.start()
staged = StagedParquet({path!r})
stream_output(model, encoder, schema, {rows}, staged, seed=0, keep_rows=10_000)
staged.discard()
print(tracemalloc.get_traced_memory()[1])
"""

ROWS_FOR_MEMORY = 2_000_000
PEAK_BOUND_BYTES = 150 * 2**20  # one 65,536-row batch plus the kept rows; the whole output would be ~40 MB per column


@pytest.mark.slow
def test_generating_two_million_rows_keeps_peak_memory_bounded(tmp_path):
    # tracemalloc sees numpy/pandas/pyarrow allocations through Python's allocator hooks (torch's own allocator it
    # does not, which is why the bound is on traced memory and the model is tiny).
    script = MEMORY_SCRIPT.format(root=str(ROOT), path=str(tmp_path / "big.parquet"), rows=ROWS_FOR_MEMORY)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    peak = int(done.stdout.split()[-1])
    assert peak < PEAK_BOUND_BYTES, f"peak traced memory {peak / 2**20:.0f} MiB"


def test_training_batch_shrinks_to_what_free_memory_holds(monkeypatch, caplog):
    # Arrange: free memory whose training share holds 100 rows of 10 features.
    import logging

    import torch

    from synthgate.models import training

    room = 100 * 10 * training.BYTES_PER_VALUE / training.MEMORY_SHARE
    monkeypatch.setattr(training, "free_memory_bytes", lambda device: room)
    x = torch.randn(1000, 10)
    sizes: list[int] = []

    def step(batch):
        sizes.append(len(batch))
        return torch.zeros(())

    # Act
    with caplog.at_level(logging.WARNING, logger="synthgate.models.training"):
        training.train(step, x, modules={}, epochs=1, batch_size=500, generator=torch.Generator().manual_seed(0))
    kept = training.memory_batch_size(50, 10, torch.device("cpu"))

    # Assert: never more than fits, every row still seen once, a warning says why; a batch that fits is kept.
    assert max(sizes) == 100 and sum(sizes) == 1000
    assert "does not fit" in caplog.text
    assert kept == 50


def test_training_on_a_row_subset_refuses_dp_sampling_over_every_row():
    # Arrange: DP-SGD's Poisson loader draws from all rows of x, so a validation split passed as `rows` would leak.
    import torch

    from synthgate.models import training

    x = torch.randn(20, 3)
    rows, _ = training.split_validation(x, 0.5, torch.Generator().manual_seed(0))

    # Act / Assert
    with pytest.raises(ValueError, match="rows=None with privacy"):
        training.train(
            lambda batch: torch.zeros(()), x, modules={}, epochs=1, batch_size=5,
            generator=torch.Generator().manual_seed(0), rows=rows, privacy=object(),
        )  # fmt: skip


def test_one_batch_of_every_row_reaches_the_step_as_none_and_any_other_batch_as_indices():
    # Arrange: a step that records what it is given; `indices` steps gather their own rows
    import torch

    from synthgate.models import training

    x = torch.randn(30, 3)
    rows, _ = training.split_validation(x, 0.2, torch.Generator().manual_seed(0))

    def batches_seen(**kwargs) -> list:
        seen: list = []

        def step(batch):
            seen.append(batch)
            return torch.zeros(())

        training.train(step, x, modules={}, epochs=2, generator=torch.Generator().manual_seed(0), **kwargs)
        return seen

    # Act
    whole = batches_seen(batch_size=30, indices=True)
    split = batches_seen(batch_size=20, indices=True)
    subset = batches_seen(batch_size=30, indices=True, rows=rows)
    gathered = batches_seen(batch_size=30)

    # Assert: None only when one batch is every row of x; otherwise shuffled indices (or rows) covering each row once,
    # cut into equal batches (30 rows at most 20 a batch: two of 15, not 20 and 10)
    assert whole == [None, None]
    assert [len(b) for b in split] == [15, 15, 15, 15] and sorted(torch.cat(split[:2]).tolist()) == list(range(30))
    assert all(sorted(b.tolist()) == sorted(rows.tolist()) for b in subset)
    assert [tuple(b.shape) for b in gathered] == [(30, 3), (30, 3)]
