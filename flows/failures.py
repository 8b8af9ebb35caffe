"""What the terminal shows when a command fails: one clean block for an expected error, one line for a bug.

Prefect logs every failed task and flow run with its traceback to the console and to the API. In a terminal the
command prints the error itself, so `quiet_failure_logs` keeps those records off the console while they still reach
the API: the flow run ends `Failed` with the message and its logs hold the traceback. An unexpected error's traceback
goes to a log file whose path is printed (docs/decisions.md#error-display).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from synthgate.schemas.errors import InvalidInputError, SynthgateError

LOG_DIR_ENV = "SYNTHGATE_LOG_DIR"
_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
_SERVER_DOWN = (
    "Failed to reach API",
    "Timed out while attempting to connect to ephemeral Prefect API server",
    "All connection attempts failed",
)


class _HideRunFailures(logging.Filter):
    """Drops failed flow/task runs' records (errors, tracebacks, `Finished in state Failed`) from a console."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(_RUN_LOGGERS):
            return True
        if record.levelno >= logging.ERROR:
            return False
        return not str(record.msg).startswith("Finished in state Failed")


@contextlib.contextmanager
def quiet_failure_logs() -> Iterator[None]:
    """Keep Prefect's run-failure records off the terminal (stream handlers only; the API handler still sends them)."""
    hide = _HideRunFailures()
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    for handler in handlers:
        handler.addFilter(hide)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(hide)


def as_expected(exc: BaseException) -> BaseException:
    """`exc`, or the input error a user should see when it is a known environment failure (Prefect server down)."""
    if isinstance(exc, SynthgateError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    if any(marker in text for marker in _SERVER_DOWN) or type(exc).__name__ in ("ConnectError", "ConnectTimeout"):
        url = os.environ.get("PREFECT_API_URL") or "the temporary local server"
        return InvalidInputError(
            f"the Prefect API ({url}) could not be reached ({text}). Fix: start it (`prefect server start`) and set "
            "PREFECT_API_URL to its /api URL, or unset PREFECT_API_URL so synthgate starts a temporary local server; "
            "on a busy machine raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
        )
    return exc


def log_dir() -> Path:
    """Where crash logs go: `$SYNTHGATE_LOG_DIR`, else `$XDG_CACHE_HOME/synthgate/logs`, else `~/.cache/...`."""
    explicit = os.environ.get(LOG_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "synthgate" / "logs"


def write_crash_log(exc: BaseException) -> Path:
    """Write the command line and `exc`'s full traceback to a new file under `log_dir()`; return its path."""
    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"synthgate-{stamp}-{os.getpid()}.log"
    text = f"command: {' '.join(sys.argv)}\n\n" + "".join(traceback.format_exception(exc))
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".crash-", suffix=".tmp", delete=False) as handle:
        handle.write(text)
    os.replace(handle.name, path)  # atomic: a reader never sees half a log
    return path
