"""The DP bench's glue to its smartnoise peers and its bar, without the smartnoise venv."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from palmerpenguins import load_penguins

from bench import dp_peers
from bench.dp_tradeoff import verdict
from synthgate.schemas.table import infer_schema


def test_peers_get_the_schema_kinds_and_public_bounds():
    # Arrange
    frame = load_penguins()
    schema = infer_schema(frame)

    # Act
    categorical, continuous, bounds = dp_peers.runner_columns(schema)

    # Assert: categories go to labels, numbers to bins over the whole table's range (no budget spent on it)
    assert {"species", "island", "sex"} <= set(categorical)
    assert {"bill_length_mm", "body_mass_g"} <= set(continuous)
    assert set(categorical).isdisjoint(continuous)
    assert bounds["body_mass_g"] == [frame["body_mass_g"].min(), frame["body_mass_g"].max()]


def test_a_peer_csv_comes_back_with_the_training_values_and_dtypes(tmp_path):
    # Arrange: a training split with an int-valued category, a bool, text with gaps and an integer column, and the
    # CSV a peer writes for it (labels as text, integers decoded to bin midpoints)
    train = pd.DataFrame(
        {
            "speed": np.array([25, 33, 25, 66] * 25, dtype=np.int64),
            "cd": [True, False] * 50,
            "region": pd.Series(["north", "south", None, "east"] * 25, dtype="str"),
            "price": np.arange(100, dtype=np.int64) * 10 + 1000,
        }
    )
    schema = infer_schema(train)
    path = tmp_path / "peer.csv"
    path.write_text("speed,cd,region,price\n33,True,south,1049.5\n25,False,,1990.25\n")

    # Act
    back = dp_peers.read_back(path, train, schema)

    # Assert
    assert back["speed"].tolist() == [33, 25] and back["speed"].dtype == np.int64
    assert back["cd"].tolist() == [True, False]
    assert back["region"].iloc[0] == "south" and pd.isna(back["region"].iloc[1])
    assert back["price"].tolist() == [1050, 1990] and back["price"].dtype == np.int64


def test_the_bar_needs_every_threshold_and_aim_matched():
    # Arrange
    good = {"shapes": 0.93, "pairs": 0.88, "tstr": 0.85, "fit_s": 40.0}
    aim = {"shapes": 0.91, "pairs": 0.86, "tstr": 0.90}

    # Act
    alone, passed_alone = verdict(good, None)
    beside, passed_beside = verdict(good, aim)
    no_target, passed_no_target = verdict(good | {"tstr": None}, None)
    refused, passed_refused = verdict(good | {"published": False}, None)

    # Assert: AIM's better TSTR fails the row; a table without a target skips the TSTR check
    assert passed_alone and all(c.endswith("ok") for c in alone)
    assert not passed_beside and ">=AIM FAIL" in beside
    assert passed_no_target and not any(c.startswith("tstr") for c in no_target)
    assert not passed_refused and "published FAIL" in refused  # the gates' refusal fails the bar


def test_a_merged_record_keeps_the_rows_a_run_did_not_measure(tmp_path, monkeypatch):
    from bench import results

    monkeypatch.setattr(results, "commit", lambda: "test")
    keys = ("table", "model", "epsilon")
    grid = [{"table": "t", "model": "marginal", "epsilon": e, "shapes": 0.9} for e in (1.0, 3.0)]
    results.record("grid", grid, title="grid", directory=tmp_path, merge_on=keys)
    aim = [{"table": "t", "model": "sn_aim", "epsilon": 3.0, "shapes": 0.8}]
    rerun = [{"table": "t", "model": "marginal", "epsilon": 3.0, "shapes": 0.95}]
    results.record("grid", aim, title="grid", directory=tmp_path, merge_on=keys)
    path = results.record("grid", rerun, title="grid", directory=tmp_path, merge_on=keys)
    rows = json.loads(path.read_text())["rows"]
    assert [(r["model"], r["epsilon"], r["shapes"]) for r in rows] == [
        ("marginal", 1.0, 0.9),
        ("sn_aim", 3.0, 0.8),
        ("marginal", 3.0, 0.95),
    ]
    assert results.record("grid", aim, title="grid", directory=tmp_path).read_text().count('"table"') == 1
