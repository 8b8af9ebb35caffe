"""The HTML report is one offline file with every section; artifacts, terminal table and regeneration work."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from synthgate.schemas.gates import GateResult
from synthgate.schemas.metadata import CandidateScore, OutputMetadata
from synthgate.schemas.table import infer_schema
from synthgate.tasks import report
from synthgate.tasks.gates import evaluate_gates
from synthgate.tasks.report_html import banner
from synthgate.tasks.split import split_holdout

SECTIONS = ("verdict", "metrics", "distributions", "correlations", "privacy", "facts", "notes")


@pytest.fixture(scope="module")
def refused_run(penguins):
    """Penguins with independent-marginals 'synthetic' rows: a refused run with real metrics."""
    schema = infer_schema(penguins, name="penguins")
    train, holdout = split_holdout(penguins, fraction=0.2, seed=0)
    rng = np.random.default_rng(0)
    synthetic = pd.DataFrame({c: train[c].to_numpy()[rng.integers(0, len(train), len(train))] for c in train.columns})
    gates = evaluate_gates(train, holdout, synthetic, schema, target="species", max_privacy_queries=100, seed=0)
    facts = {
        "model": "independent marginals",
        "seed": 0,
        "rows": len(synthetic),
        "data hash": "abc123",
        "epsilon": None,
    }
    return schema, holdout, synthetic, gates, facts


@pytest.mark.slow
def test_report_is_one_offline_file_with_every_section(refused_run, tmp_path):
    # Arrange
    schema, holdout, synthetic, gates, facts = refused_run
    candidates = [
        CandidateScore(model="gmm", score=0.81, fit_seconds=2.0),
        CandidateScore(model="vae", score=None, fit_seconds=1.0, error="diverged"),
    ]

    # Act
    path = report.write_report(
        tmp_path / "out" / "report.html",
        report.render_report(
            schema=schema,
            real=holdout,
            synthetic=synthetic,
            gates=gates,
            facts=facts,
            candidates=candidates,
        ),
    )

    # Assert
    text = path.read_text()
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # no temp file left behind
    for section in SECTIONS:
        assert f'<section id="{section}">' in text
    assert "REFUSED" in text and all(name in text for name in gates.failing)
    images = re.findall(r"src='(data:image/png;base64,[^']+)'", text)
    assert len(images) >= len(schema.modelled) + 2  # one per column, heatmaps, DCR histogram
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched from the network
    assert "<script" not in text and "<link" not in text
    assert "Candidates" in text and "diverged" in text


@pytest.mark.slow
def test_banner_is_green_when_passed_and_names_failures_when_refused(refused_run):
    # Arrange
    _, _, _, gates, _ = refused_run
    passed = GateResult(metrics=[m.model_copy(update={"passed": True}) for m in gates.metrics])

    # Act
    green, red = banner(passed), banner(gates)

    # Assert
    assert 'class="banner pass"' in green and "PUBLISHED" in green
    assert 'class="banner fail"' in red and all(f"<b>{name}</b>" in red for name in gates.failing)


def test_failed_write_leaves_the_old_report_and_no_temp_file(tmp_path, monkeypatch):
    # Arrange
    target = tmp_path / "report.html"
    target.write_text("previous report")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report.Path, "write_text", broken)  # fails while writing the temporary file

    # Act
    with pytest.raises(RuntimeError):
        report.write_report(target, "<html></html>")

    # Assert: the old report is intact and no temporary file remains
    monkeypatch.undo()
    assert target.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.slow
def test_artifacts_outside_a_run_are_skipped_quietly(refused_run):
    # Arrange
    _, _, _, gates, facts = refused_run

    # Act
    ids = report.create_run_artifacts(gates, facts)

    # Assert
    assert ids == []
    assert "| metric |" in report.summary_markdown(gates, facts)
    assert {r["metric"] for r in report.metric_records(gates)} == {m.name for m in gates.metrics}


@pytest.mark.slow
def test_artifacts_inside_a_flow_run(refused_run, prefect_harness):
    # Arrange
    from prefect import flow
    from prefect.artifacts import Artifact

    _, _, _, gates, facts = refused_run

    @flow
    def publish_summary():
        return report.create_run_artifacts(gates, facts)

    # Act
    ids = publish_summary()

    # Assert: the summary names the verdict and each failing check; the table has one record per metric
    assert len(ids) == 2
    summary = Artifact.get("synthgate-summary")
    assert summary.type == "markdown" and gates.summary() in summary.data
    assert all(f"| {name} |" in summary.data for name in gates.failing) and "**FAIL**" in summary.data
    metrics = Artifact.get("synthgate-metrics")
    table = metrics.data if isinstance(metrics.data, str) else json.dumps(metrics.data)
    assert all(m.name in table for m in gates.metrics) and '"fail"' in table


def _metadata(gates: GateResult, schema, source: str) -> OutputMetadata:
    return OutputMetadata(
        synthgate_version="0.1.0",
        run_id="run-1",
        created_at=datetime.now(UTC),
        source=source,
        model="gmm",
        seed=0,
        n_rows_input=344,
        n_rows_train=275,
        n_rows_holdout=69,
        n_rows_output=275,
        data_hash="f" * 64,
        schema=schema.model_dump(mode="json"),
        request={"input": source},
        gates=gates,
        timings={"fit_model": 1.5},
    )


@pytest.mark.slow
def test_summary_table_names_verdict_and_metrics(refused_run):
    # Arrange
    schema, _, _, gates, _ = refused_run
    console = Console(file=io.StringIO(), width=140)

    # Act
    console.print(report.summary_table(_metadata(gates, schema, "penguins.csv")))

    # Assert
    text = console.file.getvalue()
    assert "REFUSED" in text and "FAIL" in text
    assert all(m.name in text for m in gates.metrics)
    assert "seed 0" in text


@pytest.mark.slow
def test_regenerate_report_from_parquet(refused_run, penguins, tmp_path):
    # Arrange
    from synthgate.tasks.publish import write_parquet

    schema, _, synthetic, gates, _ = refused_run
    source = tmp_path / "penguins.csv"
    penguins.to_csv(source, index=False)
    parquet = write_parquet(synthetic, tmp_path / "out.parquet", _metadata(gates, schema, str(source)))

    # Act
    html_path = report.regenerate_report(parquet, tmp_path / "again.html")

    # Assert
    text = html_path.read_text()
    assert all(f'<section id="{s}">' in text for s in SECTIONS)
    assert "not available" not in text  # the real input was re-read
    assert "run-1" in text
