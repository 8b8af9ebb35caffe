"""The realism bench's glue to its peers (SDV, MOSTLY AI), without their venvs: a stand-in runner plays the peer."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import realism_peers
from synthgate.schemas.table import infer_schema

# Plays a peer's runner: copies the training CSV's first rows out, as a peer writes its rows, or reports a timeout.
FAKE_RUNNER = """
import json, shutil, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
if float(args["--max-seconds"]) < 1:
    print(json.dumps({"status": "timeout", "fit_s": 1.0, "max_seconds": float(args["--max-seconds"])}))
    sys.exit(3)
shutil.copy(args["--data"], args["--out"])
print("library chatter")
print(json.dumps({"status": "ok", "fit_s": 1.5, "sample_s": 0.25, "peak_rss_mb": 321.0, "seed": args["--seed"]}))
"""


@pytest.fixture
def fake_peer(tmp_path, monkeypatch):
    runner = tmp_path / "runner.py"
    runner.write_text(FAKE_RUNNER)
    monkeypatch.setitem(realism_peers.PYTHONS, "mostlyai", Path(sys.executable))
    monkeypatch.setitem(realism_peers.RUNNERS, "mostlyai", runner)
    return "mostlyai_tabularargn"


def test_a_peer_without_its_venv_is_skipped_with_a_note(tmp_path, monkeypatch):
    # Arrange: the SDV venv is absent, MOSTLY AI's is there
    monkeypatch.setitem(realism_peers.PYTHONS, "sdv", tmp_path / "no-venv" / "python")
    monkeypatch.setitem(realism_peers.PYTHONS, "mostlyai", Path(sys.executable))

    # Act
    models, note = realism_peers.skipped(["gmm", "sdv_tvae", "mostlyai_tabularargn", "sdv_ctgan", "cart"])
    everything, no_note = realism_peers.skipped(["gmm", "mostlyai_tabularargn"])

    # Assert: our families and the present peer run; the note names the missing venv and both SDV peers
    assert models == ["gmm", "mostlyai_tabularargn", "cart"]
    assert "no-venv" in note and "sdv_tvae" in note and "sdv_ctgan" in note and "mostlyai" not in note
    assert everything == ["gmm", "mostlyai_tabularargn"] and no_note is None


def test_each_runner_gets_its_model_the_seed_and_its_own_caps():
    # Act
    cmd = realism_peers.command("sdv_gaussiancopula", "in.csv", "out.csv", 500, seed=2, max_seconds=60.0)
    argn = realism_peers.command(
        "mostlyai_tabularargn", "in.csv", "out.csv", 500, seed=2, max_seconds=60.0, train_minutes=3.0
    )
    capped = realism_peers.command("sdv_tvae", "in.csv", "out.csv", 500, seed=2, max_seconds=60.0, train_minutes=3.0)

    # Assert
    assert cmd[1].endswith("sdv_runner.py") and cmd[cmd.index("--model") + 1] == "gaussian_copula"
    assert cmd[cmd.index("--seed") + 1] == "2" and cmd[cmd.index("--rows") + 1] == "500"
    assert argn[1].endswith("mostlyai_runner.py") and "--model" not in argn
    assert argn[argn.index("--max-training-minutes") + 1] == "3.0"  # MOSTLY AI's own training cap; SDV has none
    assert "--max-training-minutes" not in capped


def test_a_peers_rows_come_back_with_the_training_dtypes_and_its_own_timing(fake_peer):
    # Arrange: integers, a bool, text with gaps, an integer-coded category and a date
    train = pd.DataFrame(
        {
            "age": np.arange(60, dtype=np.int64) % 40 + 20,
            "cd": [True, False, True] * 20,
            "region": pd.Series(["north", None, "east"] * 20, dtype="str"),
            "price": np.linspace(10.5, 99.25, 60),
            "when": pd.date_range("2020-01-01", periods=60, freq="D"),
        }
    )
    schema = infer_schema(train)

    # Act
    rows, report = realism_peers.run_peer(fake_peer, train, schema, seed=4)

    # Assert: the CSV round trip gives back the same values and dtypes, and the runner's JSON line is the report
    assert list(rows.columns) == [c.name for c in schema.modelled]
    for col in rows.columns:
        pd.testing.assert_series_equal(rows[col], train[col], check_dtype=col != "when", check_names=False)
    assert rows["age"].dtype == np.int64 and rows["cd"].dtype == bool
    assert report["fit_s"] + report["sample_s"] == 1.75 and report["peak_rss_mb"] == 321.0 and report["seed"] == "4"


def test_a_peer_that_runs_past_its_cap_fails_the_run_with_the_reason(fake_peer):
    # Arrange
    train = pd.DataFrame({"x": np.arange(20.0), "y": ["a", "b"] * 10})

    # Act / Assert
    with pytest.raises(realism_peers.PeerFailed, match="timeout"):
        realism_peers.run_peer(fake_peer, train, infer_schema(train), seed=0, max_seconds=0.5)


def test_a_runner_crash_reports_stderrs_last_line():
    # Act
    report = realism_peers.parse_report("", "Traceback...\nValueError: bad column 'x'\n", 1)

    # Assert
    assert report == {"status": "error", "error": "ValueError: bad column 'x'"}
