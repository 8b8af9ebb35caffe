"""The realism bench's peers (SDV GaussianCopula/TVAE/CTGAN, MOSTLY AI TabularARGN), each in its own venv.

A peer never enters synthgate's environment (SDV pins pandas < 3; MOSTLY AI pins torch and pulls transformers): the
training split goes to its runner (`bench/sdv_runner.py`, `bench/mostlyai_runner.py`) as a CSV, the runner fits with
the library's defaults and writes as many rows back, and its JSON line gives fit and sample seconds and its own peak
RSS. The rows come back with the training split's dtypes (`bench.dp_peers.read_back`), so `bench/realism.py` scores
them with the same gates and the same holdout as our models. A peer whose venv is missing is skipped with a note.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from bench.dp_peers import read_back
from synthgate.schemas.table import TableSchema

HERE = Path(__file__).resolve().parent
# bench model name -> (venv, the runner's model argument or None)
PEERS = {
    "sdv_gaussiancopula": ("sdv", "gaussian_copula"),
    "sdv_tvae": ("sdv", "tvae"),
    "sdv_ctgan": ("sdv", "ctgan"),
    "mostlyai_tabularargn": ("mostlyai", None),
}
RUNNERS = {"sdv": HERE / "sdv_runner.py", "mostlyai": HERE / "mostlyai_runner.py"}
# The venvs the runners' docstrings build; SDV_PYTHON / MOSTLYAI_PYTHON point elsewhere.
PYTHONS = {
    "sdv": Path(os.environ.get("SDV_PYTHON", "/work/sdv-venv/bin/python")),
    "mostlyai": Path(os.environ.get("MOSTLYAI_PYTHON", "/work/mostlyai-venv/bin/python")),
}
MAX_SECONDS = 3600.0  # a fit past this is reported as a timeout, not waited on


class PeerFailed(RuntimeError):
    """The peer's runner timed out, crashed or wrote no rows."""


def is_peer(model: str) -> bool:
    return model in PEERS


def available(model: str) -> bool:
    """Whether the venv that runs `model` is there."""
    return PYTHONS[PEERS[model][0]].exists()


def skipped(models: list[str]) -> tuple[list[str], str | None]:
    """(the models to run, a note naming the peers left out because their venv is missing, or None)."""
    missing = [m for m in models if is_peer(m) and not available(m)]
    if not missing:
        return list(models), None
    where = ", ".join(sorted({str(PYTHONS[PEERS[m][0]]) for m in missing}))
    note = f"peers not run (no venv at {where}; see the runners' docstrings): {', '.join(missing)}"
    return [m for m in models if m not in missing], note


def command(
    model: str, data: Path, out: Path, rows: int, *, seed: int, max_seconds: float, train_minutes: float | None = None
) -> list[str]:
    """The runner's command line for `model`; `train_minutes` caps MOSTLY AI's own training time (others ignore it)."""
    venv, name = PEERS[model]
    cmd = [str(PYTHONS[venv]), str(RUNNERS[venv]), "--data", str(data), "--rows", str(rows), "--out", str(out)]
    cmd += ["--seed", str(seed), "--max-seconds", str(max_seconds)]
    if venv == "mostlyai" and train_minutes is not None:
        cmd += ["--max-training-minutes", str(train_minutes)]
    return cmd + (["--model", name] if name else [])


def parse_report(stdout: str, stderr: str, returncode: int) -> dict:
    """The runner's last stdout line as JSON, or an error report carrying stderr's last line."""
    lines = stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = stderr.strip().splitlines()[-1:] or [f"exit code {returncode}"]
        return {"status": "error", "error": tail[0][:300]}


def run_peer(
    model: str,
    train: pd.DataFrame,
    schema: TableSchema,
    *,
    seed: int,
    max_seconds: float = MAX_SECONDS,
    train_minutes: float | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Fit peer `model` on `train`'s modelled columns in its venv and sample as many rows.

    Returns:
        (the synthetic rows with the training split's dtypes, the runner's report: fit_s, sample_s, peak_rss_mb).

    Raises:
        PeerFailed: the runner timed out or failed; the message says which and why.
    """
    modelled = [c.name for c in schema.modelled]
    with tempfile.TemporaryDirectory(prefix="realism-peer-") as tmp:
        data, out = Path(tmp) / "train.csv", Path(tmp) / "synthetic.csv"
        train[modelled].to_csv(data, index=False)
        cmd = command(model, data, out, len(train), seed=seed, max_seconds=max_seconds, train_minutes=train_minutes)
        try:  # the runner stops itself at max_seconds; the margin covers its imports, warm-up and sampling
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=max_seconds + 600, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PeerFailed(f"{model}: no answer within {max_seconds + 600:.0f} s") from exc
        report = parse_report(done.stdout, done.stderr, done.returncode)
        if report.get("status") == "timeout":
            raise PeerFailed(f"{model}: timeout, fit ran past {report.get('max_seconds')} s")
        if report.get("status") != "ok" or not out.exists():
            raise PeerFailed(f"{model}: {report.get('error', 'no rows written')}")
        return read_back(out, train, schema), report
