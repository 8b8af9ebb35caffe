"""The real thing: a Prefect server, the process work pool, `prefect deploy`, a deployment run, a worker.

Starts `prefect server start` (SQLite in its own PREFECT_HOME under tmp, a random free port), deploys
`deployments/prefect.yaml`, runs the on-demand deployment through the API with parameters, lets
`prefect worker start --run-once` execute it, and finds the Parquet output. Then the watch-table deployment scores
a drifted batch with that output's model and queues a regeneration on on-demand. Server and workers are started in
their own process groups and killed in `finally`, whatever fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen | None) -> None:
    """Terminate a process group, then kill it if it lingers."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_deploy_run_and_work_a_deployment(tmp_path, penguins):
    # Arrange
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "SYNTHGATE_PROJECT_DIR": str(ROOT),
        "SYNTHGATE_CACHE": str(tmp_path / "cache"),
    }
    source = tmp_path / "penguins.csv"
    penguins.dropna().to_csv(source, index=False)  # orchestration is under test, not the gates: relaxed below
    output = tmp_path / "out" / "copy.parquet"
    logs = tmp_path / "server.log"
    server = worker = watcher = None
    try:
        with logs.open("w") as log:
            server = subprocess.Popen(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _wait_healthy(api, server, logs)

        # Act: pool, gpu limit, deploy, one run with parameters, one worker pass
        _cli([str(BIN / "prefect"), "work-pool", "create", "synthgate-process", "--type", "process"], env)
        assert "gpu = 1" in _cli([str(BIN / "synthgate"), "setup", "--gpu-slots", "1"], env)
        _cli(
            [str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"], env
        )
        run_id = _cli(
            [
                str(BIN / "python"), "-c",
                "import sys; from prefect.deployments import run_deployment;"
                "r = run_deployment('synthetic-copy/on-demand', timeout=0, parameters={"
                f"'input': {str(source)!r}, 'output': {str(output)!r}, 'rows': 100, 'seed': 1,"
                "'thresholds': {'pair_trends_min': 0.6, 'column_shapes_min': 0.6}});"
                "print(r.id)",
            ],
            env,
        ).strip().splitlines()[-1]  # fmt: skip
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "synthgate-process", "--run-once"],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        state = _wait_final(api, run_id, timeout=400)

        # Assert
        worker_output = worker.communicate(timeout=60)[0] if state else ""
        assert state == "COMPLETED", f"flow run ended {state}\n{worker_output[-3000:]}"
        import pandas as pd

        assert len(pd.read_parquet(output)) == 100
        limit = httpx.post(f"{api}/concurrency_limits/filter", json={}, timeout=10).json()
        assert [(c["tag"], c["concurrency_limit"]) for c in limit] == [("gpu", 1)]

        # Act: watch-table on a one-species batch, with the model behind the copy just published
        batches = tmp_path / "batches"
        batches.mkdir()
        penguins[penguins["species"] == "Gentoo"].dropna().to_csv(batches / "gentoo.csv", index=False)
        watch_id = _cli(
            [
                str(BIN / "python"), "-c",
                "from prefect.deployments import run_deployment;"
                "r = run_deployment('watch-table/watch-table', timeout=0, parameters={"
                f"'model': {str(output)!r}, 'batches': {str(batches)!r}, 'output_dir': {str(tmp_path / 'watch')!r},"
                "'fpr': 0.05}); print(r.id)",
            ],
            env,
        ).strip().splitlines()[-1]  # fmt: skip
        watcher = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "synthgate-process", "--run-once"],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        watched = _wait_final(api, watch_id, timeout=400)

        # Assert: scores published, and a new on-demand run queued for the drifted batch
        watcher_output = watcher.communicate(timeout=60)[0] if watched else ""
        assert watched == "COMPLETED", f"watch run ended {watched}\n{watcher_output[-3000:]}"
        assert pd.read_parquet(tmp_path / "watch" / "gentoo.scores.parquet")["is_anomaly"].dtype == bool
        runs = httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10).json()
        regenerations = [r for r in runs if r["parameters"].get("input") == str(batches / "gentoo.csv")]
        assert len(regenerations) == 1 and regenerations[0]["parameters"]["model"] == "gmm"
    finally:
        _stop(worker)
        _stop(watcher)
        _stop(server)
    assert server.poll() is not None


def _wait_healthy(api: str, server: subprocess.Popen, logs: Path, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"prefect server exited with {server.returncode}:\n{logs.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {timeout} s:\n{logs.read_text()[-3000:]}")


def _wait_final(api: str, run_id: str, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state"]["type"]
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return state
        time.sleep(1)
    return state
