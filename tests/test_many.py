"""Many tables: the manifest (listed tables, a whole database), and one bad table that costs the others nothing."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from synthgate.flows.many import load_manifest
from synthgate.schemas.errors import InvalidInputError
from synthgate.tasks.sql import write_table


def _manifest(path, data) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_manifest_resolves_paths_defaults_and_a_whole_database(tmp_path, penguins):
    # Arrange
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    for name in ("orders", "customers", "audit"):
        write_table(penguins.head(30), db, name)
    manifest = _manifest(
        tmp_path / "m.yaml",
        {
            "output_dir": "out",
            "defaults": {"model": "gmm", "seed": 3},
            "tables": [{"input": "data/a.csv", "rows": 10}, {"input": "dataset:wine", "name": "wine2", "seed": 5}],
            "database": {"url": db, "exclude": ["audit"]},
        },
    )

    # Act
    jobs = dict(load_manifest(manifest))

    # Assert
    assert sorted(jobs) == ["a", "customers", "orders", "wine2"]
    assert jobs["a"].input == str(tmp_path / "data" / "a.csv") and jobs["a"].rows == 10 and jobs["a"].seed == 3
    assert jobs["wine2"].seed == 5 and jobs["wine2"].output == tmp_path / "out" / "wine2.parquet"
    assert jobs["orders"].input == db and jobs["orders"].table == "orders"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tables": [{"input": "a.csv", "modle": "gmm"}]}, "table 'a'.*modle"),
        ({"tables": [{"input": "a.csv"}, {"input": "b/a.csv"}]}, "appear twice"),
        ({"tabels": []}, "not a valid manifest"),
        ({}, "no tables"),
        ({"database": {"url": "sqlite:///{tmp}/x.db", "include": ["nope"]}}, "unknown tables"),
    ],
)
def test_manifest_mistakes_fail_before_any_run(tmp_path, data, message):
    if "database" in data:
        data = {"database": {**data["database"], "url": data["database"]["url"].format(tmp=tmp_path)}}
    with pytest.raises(InvalidInputError, match=message):
        load_manifest(_manifest(tmp_path / "m.yaml", data))


def test_many_publishes_the_good_tables_despite_a_bad_one(prefect_harness, tmp_path, penguins):
    """Through the CLI: a summary table, the worst table's exit code, every good output, a Prefect artifact."""
    from prefect.artifacts import Artifact
    from typer.testing import CliRunner

    from synthgate.flows.cli import app
    from synthgate.flows.many import SUMMARY_KEY
    from tests.terminal import prefect_console

    # Arrange
    small = penguins.dropna().reset_index(drop=True)
    small.head(120).to_csv(tmp_path / "first.csv", index=False)
    small.tail(120).to_csv(tmp_path / "second.csv", index=False)
    (tmp_path / "broken.csv").write_text("")
    manifest = _manifest(
        tmp_path / "m.yaml",
        {
            "output_dir": "out",
            # Two components on 96 rows: pair trends against the 24-row holdout average 0.80, the default threshold,
            # so half the seeds would refuse; this test is about orchestration, not fidelity.
            "defaults": {"model_options": {"n_components": 2}, "thresholds": {"pair_trends_min": None}},
            "tables": [{"input": "first.csv"}, {"input": "broken.csv"}, {"input": "second.csv"}],
        },
    )

    # Act
    with prefect_console() as logs:
        result = CliRunner().invoke(app, ["many", manifest, "--no-cache"])

    # Assert
    assert result.exit_code == 2, result.output  # bad input is the worst outcome here
    assert "Traceback" not in logs.getvalue() + result.output  # the bad table's error is in the summary, once
    assert (tmp_path / "out" / "first.parquet").exists() and (tmp_path / "out" / "second.parquet").exists()
    assert not (tmp_path / "out" / "broken.parquet").exists()
    assert len(pd.read_parquet(tmp_path / "out" / "first.parquet")) > 0
    artifact = Artifact.get(SUMMARY_KEY)
    statuses = {row["table"]: row["status"] for row in _records(artifact.data)}
    assert statuses == {"first": "published", "broken": "bad input", "second": "published"}


def _records(data) -> list[dict]:
    import json

    return json.loads(data) if isinstance(data, str) else data
