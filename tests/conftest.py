"""Shared fixtures: real tables, and one Prefect test harness for the whole session (Prefect is slow to start)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Parallel workers (pytest-xdist) each get their own Prefect home: one SQLite database per server that writes to it.
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    home = Path(os.environ.get("PREFECT_HOME", Path(__file__).resolve().parents[1] / ".prefect-home"))
    os.environ["PREFECT_HOME"] = str(home / "workers" / worker)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def pytest_configure(config):
    """Test tensors are small: one intra-op thread is as fast, and it stays fast when other jobs load the cores
    (two threads on two busy cores made the GMM tests ten times slower)."""
    import torch

    torch.set_num_threads(int(os.environ.get("SYNTHGATE_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for every test that runs a flow; request it by name (plain tests don't pay for it)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    return load_penguins()


@pytest.fixture(scope="session")
def wine() -> pd.DataFrame:
    from sklearn.datasets import load_wine

    bunch = load_wine(as_frame=True)
    frame = bunch.frame.copy()
    frame["target"] = frame["target"].map(dict(enumerate(bunch.target_names))).astype("str")
    return frame


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of small matrices that must run on one thread whatever SYNTHGATE_TEST_THREADS says: a second
    thread only adds spin-waiting on shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small_encoded(penguins):
    """Complete penguin rows encoded with modes for continuous columns, as the flow does for the neural models."""
    from synthgate.models.encoders.table import TableEncoder
    from synthgate.schemas.table import infer_schema

    frame = penguins.dropna().reset_index(drop=True)
    encoder = TableEncoder(infer_schema(frame), normalization="mode").fit(frame)
    return encoder, encoder.transform(frame)


@pytest.fixture
def output_metadata():
    """Build the metadata a published file carries for `frame`: a passing gate, every row counted as output."""
    from datetime import UTC, datetime

    from synthgate.schemas.gates import GateResult, MetricResult
    from synthgate.schemas.metadata import OutputMetadata
    from synthgate.schemas.table import infer_schema

    def build(frame: pd.DataFrame) -> OutputMetadata:
        gates = GateResult(metrics=[MetricResult.judge("column_shapes", "fidelity", 0.9, 0.85, "min")])
        return OutputMetadata(
            synthgate_version="test", run_id="r1", created_at=datetime.now(UTC), source="x.parquet", model="gmm",
            seed=1, n_rows_input=len(frame), n_rows_train=len(frame), n_rows_holdout=0, n_rows_output=len(frame),
            data_hash="abc", schema=infer_schema(frame).model_dump(mode="json"), request={"input": "x"}, gates=gates,
        )  # fmt: skip

    return build


def pytest_collection_modifyitems(config, items):
    """A test that starts the Prefect test harness is slow by definition (the harness alone takes 10-50 s to start),
    so `make test-fast` (`-m "not slow"`) never starts a Prefect server."""
    for item in items:
        if "prefect_harness" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
