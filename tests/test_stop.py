"""A stopped or killed run leaves nothing misleading: no false PUBLISHED, no temporary files, no child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from synthgate.schemas.gates import GateResult, MetricResult
from synthgate.schemas.table import infer_schema
from synthgate.tasks import report, report_html
from synthgate.tasks.publish import atomic_path, remove_stale_temporaries, temporary_prefix
from synthgate.tasks.stop import RunStopped, clear_stop, request_stop, stop_scope, stoppable
from synthgate.tasks.threads import plan_threads, use_threads

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ plain functions
def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    # Arrange: a dead run's leftover (pid 2**22 + 1 is above Linux's pid_max default), a live writer's, another file's.
    out = tmp_path / "out.parquet"
    dead = tmp_path / f".out.parquet.{2**22 + 1}.k3j2.tmp"
    legacy = tmp_path / ".out.parquet.x8f2k1.tmp"  # written before temporaries named their writer
    live = tmp_path / f"{temporary_prefix(out)}abcd.tmp"
    other = tmp_path / f".other.parquet.{2**22 + 1}.k3j2.tmp"
    for path in (dead, legacy, live, other):
        path.write_bytes(b"half a file")

    # Act
    removed = remove_stale_temporaries(out, None)

    # Assert
    assert sorted(removed) == sorted([dead, legacy])
    assert live.exists() and other.exists() and not dead.exists()


def test_a_passed_report_says_published_only_after_the_commit(tmp_path, penguins):
    # Arrange: two passed checks (the gates themselves are tested elsewhere).
    schema = infer_schema(penguins, name="penguins")
    passed = GateResult(
        metrics=[
            MetricResult.judge("column_shapes", "fidelity", 0.9, 0.8, "min"),
            MetricResult.judge("exact_match_ratio", "privacy", 0.5, 1.0, "max"),
        ]
    )
    path = tmp_path / "p.html"

    # Act
    html = report.render_report(schema=schema, real=None, synthetic=penguins, gates=passed, facts={}, pending=True)
    report.write_report(path, html)
    before = path.read_text()
    report_html.mark_published(path, passed)
    after = path.read_text()

    # Assert
    assert "NOT PUBLISHED" in before and "PUBLISHED: all" not in before
    assert "PUBLISHED: all" in after and "NOT PUBLISHED" not in after and report_html.PENDING_MARK not in after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.html"]


def test_a_stop_request_ends_training_at_the_next_epoch_and_in_worker_threads():
    # Arrange: a progress callback as the training loop calls it, in a thread started inside a stop scope.
    seen: list[BaseException] = []

    def fit_in_thread() -> None:
        progress = stoppable(None)
        try:
            for _ in range(10_000):
                progress(None)
                time.sleep(0.001)
        except RunStopped as exc:
            seen.append(exc)

    # Act: the flow's block fails (as a signal or a cancellation would make it); the scope stops the worker.
    with pytest.raises(KeyboardInterrupt), stop_scope():
        worker = threading.Thread(target=__import__("contextvars").copy_context().run, args=(fit_in_thread,))
        worker.start()
        time.sleep(0.05)
        raise KeyboardInterrupt
    worker.join(timeout=5)

    # Assert
    assert not worker.is_alive() and len(seen) == 1
    request_stop()
    with pytest.raises(RunStopped):
        stoppable(None)(None)
    clear_stop()
    stoppable(None)(None)  # a new run starts unstopped


def test_thread_plan_follows_the_cores_and_the_parallel_fits():
    # Act
    small, big, auto = plan_threads(cpus=2), plan_threads(cpus=16), plan_threads(cpus=16, parallel_fits=4)

    # Assert: two cores leave one thread a fit; more cores give more, split among parallel fits, capped.
    assert (small.fit_threads, big.fit_threads, auto.fit_threads) == (1, 4, 2)
    assert plan_threads(cpus=1, parallel_fits=4).fit_threads == 1
    import torch

    before = torch.get_num_threads()
    with use_threads(small):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------------------------------- real kills
def _children(pid: int) -> set[int]:
    """Every descendant of `pid`, from /proc (Linux)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for_training(proc: subprocess.Popen, log: Path) -> None:
    """Return once the run has encoded its rows and started fitting (the gan has no early stopping, so with a huge
    epoch count it is still training when the test acts; its first progress line would come a tenth of the way)."""
    deadline = time.monotonic() + 600
    while "preprocess:" not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.5)
    time.sleep(2)


def _start_training_run(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    """`synthgate run` on penguins with a gan and far more epochs than it will get; returns once training started."""
    out, log = tmp_path / "out.parquet", tmp_path / "run.log"
    env = {
        **os.environ,
        "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(ROOT / ".prefect-home")),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "synthgate.flows.cli", "run", "--input", "dataset:penguins", "--output", str(out)]
    cmd += ["--model", "gan", "--epochs", "100000", "--no-cache"]
    with log.open("w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    _wait_for_training(proc, log)
    return proc, out, log


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_training_run_within_seconds_and_leaves_nothing(tmp_path, signum):
    # Arrange
    proc, out, log = _start_training_run(tmp_path)
    children = _children(proc.pid)
    assert children, "the CLI should have started its temporary Prefect server"

    # Act
    os.kill(proc.pid, signum)
    start = time.monotonic()
    code = proc.wait(timeout=60)
    seconds = time.monotonic() - start

    # Assert
    text = log.read_text()
    assert seconds < 15, f"took {seconds:.1f} s to stop"
    assert code == 128 + signum, text[-3000:]
    assert "STOPPED" in text and "Traceback" not in text
    assert not out.exists() and not list(tmp_path.glob(".out.parquet.*"))
    report_path = out.with_suffix(".html")
    assert not report_path.exists() or "PUBLISHED: all" not in report_path.read_text()
    time.sleep(1)
    assert not [pid for pid in children if _alive(pid)], "a child process outlived the CLI"


@pytest.mark.slow
def test_a_killed_run_takes_its_prefect_server_with_it(tmp_path):
    # Arrange
    proc, _, _ = _start_training_run(tmp_path)
    children = _children(proc.pid)

    # Act
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)

    # Assert
    assert children and not [pid for pid in children if _alive(pid)], "the temporary server was orphaned"


def test_stale_file_names_are_ours_only(tmp_path):
    # Arrange / Act: what atomic writes leave while in flight.
    target = tmp_path / "x.parquet"
    with atomic_path(target) as tmp:
        name = tmp.name

    # Assert: hidden, named after the target and the writer's pid, so the stale-file sweep can judge it.
    assert name.startswith(f".x.parquet.{os.getpid()}.") and name.endswith(".tmp")
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


_FLOW_RUN = """
import sys
from synthgate.flows.synthesize import synthesize_table
from synthgate.schemas.request import RunRequest

request = RunRequest.from_sources(
    input="dataset:penguins", output=sys.argv[1], model="gan", model_options={"epochs": 100000}
)
synthesize_table(request, use_cache=False)
"""


@pytest.mark.slow
def test_a_flow_run_terminated_as_a_cancellation_does_stops_training_and_leaves_nothing(prefect_harness, tmp_path):
    """A Prefect worker cancels a deployment run by sending its flow-run process SIGTERM (then SIGKILL after a grace
    period); Prefect's engine turns the SIGTERM into an exception in the flow, which must stop training at once."""
    # Arrange: a flow run in its own process, against the session's Prefect API, training far longer than it will get
    import httpx
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    out, log = tmp_path / "out.parquet", tmp_path / "run.log"
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_LOGGING_LEVEL": "INFO"}
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-c", _FLOW_RUN, str(out)], stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
        )
    _wait_for_training(proc, log)

    # Act
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    proc.wait(timeout=60)
    seconds = time.monotonic() - start

    # Assert: stopped within seconds, nothing published or half-written, and the run is not left RUNNING
    text = log.read_text()
    assert seconds < 15, f"took {seconds:.1f} s to stop:\n{text[-3000:]}"
    assert not out.exists() and not list(tmp_path.glob(".out.parquet.*"))
    report_path = out.with_suffix(".html")
    assert not report_path.exists() or "PUBLISHED: all" not in report_path.read_text()
    runs = httpx.post(f"{api}/flow_runs/filter", json={"sort": "EXPECTED_START_TIME_DESC", "limit": 50}).json()
    ours = [r for r in runs if r["parameters"].get("request", {}).get("output") == str(out)]
    assert ours and ours[0]["state"]["type"] in ("CRASHED", "CANCELLED", "FAILED"), [r["state"] for r in ours]
