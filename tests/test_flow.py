"""End-to-end runs of the synthesize-table flow and the `synthgate` command, inside one Prefect test harness."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from synthgate.flows.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUSED, app
from synthgate.flows.synthesize import synthesize_table
from synthgate.schemas.errors import GateRefusedError
from synthgate.schemas.gates import GateThresholds
from synthgate.schemas.request import RunRequest
from synthgate.schemas.table import infer_schema
from synthgate.tasks.publish import read_metadata
from synthgate.tasks.select import candidate_names

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


def test_flow_publishes_penguins_with_input_columns_dtypes_and_metadata(penguins, tmp_path):
    # Arrange
    request = RunRequest(input="dataset:penguins", output=tmp_path / "penguins.parquet", seed=0)

    # Act
    result = synthesize_table(request)

    # Assert
    published = pd.read_parquet(result.output)
    assert list(published.columns) == list(penguins.columns)
    assert published.dtypes.to_dict() == penguins.dtypes.to_dict()
    assert len(published) == result.metadata.n_rows_train
    meta = read_metadata(result.output)
    assert meta.model == "gmm" and meta.seed == 0 and meta.gates.passed
    assert meta.gates.metric("column_shapes").value >= 0.85
    assert meta.gates.metric("exact_match_ratio").value == 0
    assert meta.data_hash and meta.request["input"] == "dataset:penguins"
    assert result.report.exists() and "<html" in result.report.read_text()[:500].lower()


def test_impossible_gate_publishes_nothing_and_exits_3(tmp_path):
    # Arrange
    config = tmp_path / "request.yaml"
    config.write_text(
        f"input: dataset:penguins\noutput: {tmp_path / 'p.parquet'}\nthresholds: {{column_shapes_min: 1.0}}\n"
    )

    # Act
    outcome = runner.invoke(app, ["run", "--config", str(config)])

    # Assert
    assert outcome.exit_code == EXIT_REFUSED, outcome.output
    assert "column_shapes" in outcome.output
    assert not (tmp_path / "p.parquet").exists()
    assert (tmp_path / "p.html").exists()  # the report says why
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.html", "request.yaml"]  # no temp files


def test_refusal_raises_from_the_flow_with_the_failing_checks(tmp_path):
    request = RunRequest.from_sources(
        input="dataset:penguins", output=tmp_path / "p.parquet", thresholds={"detection_auc_max": 0.5}
    )
    with pytest.raises(GateRefusedError, match="detection_auc"):
        synthesize_table(request)
    assert not (tmp_path / "p.parquet").exists()


def test_failed_validation_exits_2_naming_file_column_and_rule(penguins, tmp_path):
    # Arrange: a schema contract that says body mass is at most 5000 g
    data = tmp_path / "penguins.csv"
    penguins.to_csv(data, index=False)
    schema = tmp_path / "schema.yaml"
    schema.write_text("columns:\n  body_mass_g: {maximum: 5000}\n")

    # Act
    outcome = runner.invoke(app, ["run", "-i", str(data), "-o", str(tmp_path / "o.parquet"), "--schema", str(schema)])

    # Assert
    assert outcome.exit_code == EXIT_BAD_INPUT, outcome.output
    text = " ".join(outcome.output.split())
    assert "penguins.csv" in text and "body_mass_g" in text and "expect_column_values_to_be_between" in text
    assert not (tmp_path / "o.parquet").exists() and not (tmp_path / "o.html").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "nowhere.csv"], "nowhere.csv: file not found"),
        (["-i", "dataset:penguins", "--model", "magic"], "unknown model 'magic'"),
        (["-i", "dataset:penguins", "--rows", "0"], "rows"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, args, message):
    outcome = runner.invoke(app, ["run", *args, "-o", str(tmp_path / "o.parquet")])
    assert outcome.exit_code == EXIT_BAD_INPUT
    assert message in " ".join(outcome.output.split())
    assert list(tmp_path.iterdir()) == []


def test_report_command_prints_the_summary(tmp_path):
    outcome = runner.invoke(app, ["run", "-i", "dataset:iris", "-o", str(tmp_path / "iris.parquet")])
    assert outcome.exit_code == EXIT_OK, outcome.output
    summary = runner.invoke(app, ["report", str(tmp_path / "iris.parquet")])
    assert summary.exit_code == EXIT_OK and "column_shapes" in summary.output


def test_schema_infer_writes_yaml(tmp_path):
    outcome = runner.invoke(app, ["schema", "infer", "dataset:penguins", "-o", str(tmp_path / "s.yaml")])
    assert outcome.exit_code == EXIT_OK
    assert "kind: categorical" in (tmp_path / "s.yaml").read_text()


def test_auto_tries_every_family_and_records_each_candidate(tmp_path):
    # Arrange: few epochs keep the neural candidates cheap; the point is the selection, not their quality
    request = RunRequest(
        input="dataset:iris", output=tmp_path / "iris.parquet", model="auto", model_options={"epochs": 5}
    )

    # Act
    try:
        result = synthesize_table(request)
        meta = result.metadata
    except GateRefusedError as exc:  # the winner is still judged by the gates; selection is what is tested here
        meta = exc.metadata

    # Assert
    tried = {c.model for c in meta.candidates}
    assert tried == set(candidate_names())
    scored = [c for c in meta.candidates if c.detection_auc is not None and c.excluded is None]
    assert min(c.detection_auc for c in scored) >= next(c for c in scored if c.model == meta.model).detection_auc - 0.02
    assert all(c.fit_seconds > 0 for c in meta.candidates)


def test_private_run_records_the_budget_and_reports_it_beside_the_measured_risk(penguins, tmp_path):
    # Arrange: the private gmm (DP-EM) at epsilon 3 with a public schema (the data team's category lists and
    # bounds), so all of the budget goes to training. (Inferring the lists under DP from 275 rows wipes every
    # category below about 150 rows, and the gates then refuse the output, as they should.)
    schema_path = tmp_path / "penguins.yaml"
    infer_schema(penguins, name="penguins").to_yaml(schema_path)
    request = RunRequest(
        input="dataset:penguins",
        output=tmp_path / "private.parquet",
        schema_path=schema_path,
        model="gmm",
        epsilon=3.0,
        seed=0,
        # DP-EM on 275 rows keeps the marginals (column shapes 0.87) but not all pairs: the default gates refuse it,
        # rightly; this test is about the budget's record, so the pair and detection gates are off here.
        thresholds=GateThresholds(pair_trends_min=None, detection_auc_max=None),
    )

    # Act
    result = synthesize_table(request)

    # Assert: the spent budget is in the Parquet metadata, within what was asked, with delta below 1/n.
    meta = read_metadata(result.output)
    assert meta.model == "gmm_dp" and 0 < meta.epsilon <= 3.0 + 1e-9
    assert meta.delta < 1 / meta.n_rows_train
    # ... and the report's privacy section puts it beside every attack's risk and interval, with how it was spent.
    page = result.report.read_text()
    privacy = page[page.index('<section id="privacy">') : page.index('<section id="facts">')]
    assert "Budget beside measured risk" in privacy and f"{meta.epsilon}" in privacy
    for name in ("singling_out_risk", "linkability_risk", "inference_risk", "mia_auc"):
        assert name in privacy
    assert len(re.findall(r"\[\d\.\d+, \d\.\d+\]", privacy)) == 3  # a 95% interval for each attack
    assert "schema (public); all of epsilon to training" in privacy
