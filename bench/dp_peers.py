"""smartnoise-synth's MST and AIM as peers of `bench/dp_tradeoff.py`, run in their own venv through a subprocess.

The training split goes to `bench/smartnoise_runner.py` as a CSV with the schema's kinds and public bounds (the bench's
schema, read from the whole table, stands in for a user's `--schema`, so neither side spends budget on the domain),
and the peer's CSV comes back with the training split's dtypes, so every row is scored by the same functions.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from synthgate.schemas.table import ColumnKind, TableSchema

PEERS = ("mst", "aim")
RUNNER = Path(__file__).resolve().with_name("smartnoise_runner.py")
# The venv the runner's docstring builds; SMARTNOISE_PYTHON points elsewhere.
PYTHON = Path(os.environ.get("SMARTNOISE_PYTHON", "/work/smartnoise-venv/bin/python"))
NUMERIC = (ColumnKind.CONTINUOUS, ColumnKind.INTEGER)


def available() -> bool:
    """Whether the smartnoise venv is there to run the peers."""
    return PYTHON.exists()


def runner_columns(schema: TableSchema) -> tuple[list[str], list[str], dict[str, list[float]]]:
    """(categorical, continuous, public bounds) of the modelled columns, as the runner takes them.

    Raises:
        ValueError: a datetime column (the runner bins numbers and labels categories only).
    """
    categorical, continuous, bounds = [], [], {}
    for col in schema.modelled:
        if col.kind in NUMERIC:
            continuous.append(col.name)
            if col.minimum is not None and col.maximum is not None:
                bounds[col.name] = [float(col.minimum), float(col.maximum)]
        elif col.kind == ColumnKind.DATETIME:
            raise ValueError(f"column {col.name!r}: the smartnoise peers take no datetime column; drop it")
        else:
            categorical.append(col.name)
    return categorical, continuous, bounds


def read_back(path: Path, train: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """The peer's CSV with the training split's values and dtypes: labels mapped back to the real values they were
    written from, numbers rounded where the column holds integers."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=True)
    out = pd.DataFrame(index=raw.index)
    for col in schema.modelled:
        real = train[col.name]
        if col.kind in NUMERIC:
            values = pd.to_numeric(raw[col.name], errors="coerce")
            if pd.api.types.is_integer_dtype(real.dtype) or col.kind == ColumnKind.INTEGER:
                values = values.round()
            out[col.name] = values.astype(real.dtype) if values.notna().all() else values
            continue
        if col.kind == ColumnKind.DATETIME:
            out[col.name] = pd.to_datetime(raw[col.name], errors="coerce")
            continue
        lookup = {str(v): v for v in real.dropna().unique()}  # to_csv wrote str(v) for every value v
        if pd.api.types.is_numeric_dtype(real.dtype) and not pd.api.types.is_bool_dtype(real.dtype):
            lookup |= {str(float(v)): v for v in real.dropna().unique()}  # a peer that read 1 as 1.0 writes "1.0"
        values = raw[col.name].map(lookup)
        try:
            out[col.name] = values.astype(real.dtype)
        except (TypeError, ValueError):  # missing values in a dtype that cannot hold them
            out[col.name] = values
    return out


def run_peer(
    synth: str,
    train: pd.DataFrame,
    schema: TableSchema,
    *,
    epsilon: float,
    delta: float,
    max_seconds: float,
    seed: int = 0,
) -> tuple[pd.DataFrame | None, dict]:
    """Fit `synth` (mst or aim) on `train` in the smartnoise venv and sample as many rows.

    Returns:
        (synthetic rows or None, the runner's JSON report: status, fit_s, sample_s, epsilon_spent, or an error).
    """
    categorical, continuous, bounds = runner_columns(schema)
    with tempfile.TemporaryDirectory(prefix="dp-peer-") as tmp:
        data, out = Path(tmp) / "train.csv", Path(tmp) / "synthetic.csv"
        train[[c.name for c in schema.modelled]].to_csv(data, index=False)
        command = [
            str(PYTHON), str(RUNNER), "--data", str(data), "--synth", synth, "--epsilon", str(epsilon),
            "--delta", str(delta), "--rows", str(len(train)), "--out", str(out), "--categorical", ",".join(categorical),
            "--continuous", ",".join(continuous), "--bounds", json.dumps(bounds), "--max-seconds", str(max_seconds),
            "--seed", str(seed),
        ]  # fmt: skip
        try:  # the runner stops itself at max_seconds; the margin covers its imports and sampling
            done = subprocess.run(command, capture_output=True, text=True, timeout=max_seconds + 300, check=False)
        except subprocess.TimeoutExpired:
            return None, {"status": "timeout", "fit_s": float(max_seconds)}
        lines = done.stdout.strip().splitlines()
        try:
            report = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
            return None, {"status": "error", "error": tail[0][:200]}
        if report.get("status") != "ok":
            return None, report
        return read_back(out, train, schema), report
