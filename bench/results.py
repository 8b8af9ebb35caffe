"""Write a bench's figures as one JSON record in `bench/results/`, with the command, commit and machine behind them.

`docs/performance.md` is rendered from these records (`bench/render_performance.py`), so a figure is quoted once,
beside how to reproduce it, and a rerun replaces it instead of piling up next to it.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def commit() -> str:
    """The checkout's short commit, with `-dirty` when tracked files differ from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=root, check=False).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def machine(device: str = "cpu") -> str:
    """CPU cores (those this process may use), the GPU when one ran the bench, Python and torch versions."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"{cores}-core CPU ({platform.machine()})"]
    try:
        import torch

        if device.startswith("cuda") and torch.cuda.is_available():
            parts.insert(0, torch.cuda.get_device_name(0))
        parts.append(f"torch {torch.__version__}")
    except ImportError:
        pass
    parts.append(f"Python {platform.python_version()}")
    return ", ".join(parts)


def record(
    name: str,
    rows: list[dict[str, Any]],
    *,
    title: str,
    device: str = "cpu",
    notes: list[str] | None = None,
    directory: Path = RESULTS,
    merge_on: tuple[str, ...] | None = None,
) -> Path:
    """Write `bench/results/<name>.json` atomically, replacing the previous figures of the same bench and device.

    Args:
        name: the bench (`vs_sdv`, `scale`, ...); a CUDA run gets `-cuda` appended, so CPU and GPU figures both stand.
        rows: one dict per measured row, the same keys in each (the rendered table's columns, in order).
        title: one line saying what was measured.
        device: where the models ran.
        notes: conditions a reader needs (load on the machine, repeats, medians).
        directory: where records go.
        merge_on: keys that name a row (`("table", "model", "epsilon")`): the previous record's rows whose keys this
            run did not measure are kept (`merged_rows`) and its command is kept beside this one, so runs of one grid
            split over several processes (a slow peer on its own) add up to one record instead of overwriting each
            other. `notes` replace the previous ones: a bench that merges computes them on the merged rows.
    """
    stem = _stem(name, device)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{stem}.json"
    command = "python " + shlex.join(["bench/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    if merge_on:
        last = last_record(name, device=device, directory=directory)
        rows = _merge(last.get("rows", []), rows, merge_on)
        previous = last.get("command", "")
        if command not in previous.split(" ; "):
            command = f"{previous} ; {command}" if previous else command
    payload = {
        "bench": name,
        "title": title,
        "command": command,
        "commit": commit(),
        "machine": machine(device),
        "recorded": datetime.now(UTC).strftime("%Y-%m-%d"),
        "notes": list(notes or []),
        "rows": rows,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=directory)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2, default=str)
        handle.write("\n")
    os.replace(tmp, target)
    print(f"recorded {target}", file=sys.stderr)
    return target


def merged_rows(name: str, rows: list[dict[str, Any]], keys: tuple[str, ...], *, device: str = "cpu",
                directory: Path = RESULTS) -> list[dict[str, Any]]:  # fmt: skip
    """`rows` plus the recorded rows of bench `name` that they do not replace (the same values under `keys`): the
    previous order first, new rows last. A bench computes its verdicts on these, then records them with `merge_on`."""
    return _merge(last_record(name, device=device, directory=directory).get("rows", []), rows, keys)


def last_record(name: str, *, device: str = "cpu", directory: Path = RESULTS) -> dict[str, Any]:
    """The record bench `name` last wrote (its rows, notes, command, commit), or {} when there is none to read."""
    try:
        return json.loads((directory / f"{_stem(name, device)}.json").read_text())
    except (OSError, ValueError):
        return {}


def _stem(name: str, device: str) -> str:
    """A CUDA run's record is `<name>-cuda`, so CPU and GPU figures both stand."""
    return name + ("-cuda" if device.startswith("cuda") else "")


def _merge(previous: list[dict[str, Any]], rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    measured = {tuple(r.get(k) for k in keys) for r in rows}
    return [r for r in previous if tuple(r.get(k) for k in keys) not in measured] + list(rows)
