"""SIGTERM and Ctrl-C stop a command-line run promptly and cleanly.

Python's default SIGTERM ends the process at once: no `finally`, no `atexit`, so temporary files and the Prefect
server would stay behind. Here both signals set the stop flag (fits in worker threads stop at their next epoch) and
raise `KeyboardInterrupt` in the main thread, so every `finally` and context manager on the way out runs.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType


@dataclass
class Stopped:
    """The signal that stopped the run, if any."""

    signum: int | None = None


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[Stopped]:
    """Within the block, the first of `signals` stops the run; the previous handlers come back on exit."""
    from synthgate.tasks.stop import clear_stop, request_stop

    stopped = Stopped()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield stopped
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        request_stop()
        if stopped.signum is None:  # a second signal while cleaning up is ignored: the first one is being honoured
            stopped.signum = signum
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield stopped
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        clear_stop()
