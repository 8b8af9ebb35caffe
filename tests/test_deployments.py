"""`deployments/prefect.yaml` checked offline: every entrypoint is a flow, parameters fit, schedules parse.

No API is needed (Prefect only imports the modules and validates against the flows' signatures), so a typo in a
deployment fails here in seconds instead of at 02:30 on the worker.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
CI_WORKFLOW = ROOT / "deployments" / "ci" / "regenerate.yml"


def _deployments() -> list[dict]:
    return yaml.safe_load(PREFECT_YAML.read_text())["deployments"]


def test_required_deployments_exist():
    config = yaml.safe_load(PREFECT_YAML.read_text())
    by_name = {d["name"]: d for d in config["deployments"]}
    assert {"nightly-augmentation", "on-demand"} <= set(by_name)
    assert by_name["nightly-augmentation"]["schedules"], "the nightly deployment needs a cron schedule"
    assert all(d["work_pool"]["name"] == "synthgate-process" for d in config["deployments"])
    assert "set_working_directory" in str(config["pull"])


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["name"])
def test_entrypoint_parameters_and_schedules_are_valid(deployment, monkeypatch):
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import Flow, load_flow_from_entrypoint

    # Arrange
    monkeypatch.chdir(ROOT)  # entrypoints are relative to the project root, as for `prefect deploy`

    # Act
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    parameters = deployment.get("parameters") or {}

    # Assert
    assert isinstance(flow, Flow)
    signature = inspect.signature(flow.fn)
    unknown = set(parameters) - set(signature.parameters)
    assert not unknown, f"{deployment['name']}: parameters {unknown} are not arguments of {flow.name}"
    required = {n for n, p in signature.parameters.items() if p.default is inspect.Parameter.empty}
    assert required <= set(parameters), f"{deployment['name']}: no default for {required - set(parameters)}"
    flow.validate_parameters(parameters)  # types, as the server's parameter schema would check them
    for schedule in deployment.get("schedules") or []:
        CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone"))


def test_flow_parameters_build_valid_requests(tmp_path):
    """The simple typed parameters map onto RunRequest (no flow run: that is the server integration test's job)."""
    from synthgate.flows.deploy import _request

    request = _request(input="dataset:penguins", output=tmp_path / "x.parquet", thresholds={"detection_auc_max": 0.7})
    assert request.thresholds.detection_auc_max == 0.7


def test_ci_workflow_regenerates_and_fails_on_refusal():
    workflow = yaml.safe_load(CI_WORKFLOW.read_text())
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    commands = "\n".join(s.get("run", "") for s in steps)
    assert "torch==" in commands and "--index-url https://download.pytorch.org/whl/cpu" in commands
    assert "synthgate run" in commands
    assert commands.index("torch==") < commands.index("pip install -e")
