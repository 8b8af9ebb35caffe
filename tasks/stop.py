"""Stopping a run cleanly: a stop flag that training checks, set by a signal or when the flow unwinds.

A signal interrupts only the main thread; fits that run in task-runner threads (`auto`'s candidates) would train on
after the flow has given up. They call `check_stop` from their progress callback each epoch and raise `RunStopped`.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import Any

from synthgate.schemas.errors import SynthgateError

_PROCESS = threading.Event()  # set by a signal: every run in this process stops
_SCOPE: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("synthgate_stop", default=None)


class RunStopped(SynthgateError):
    """The run was asked to stop (a signal, a cancellation, or a failure elsewhere in the flow)."""


def request_stop() -> None:
    """Ask every run in this process to stop at its next check (safe to call from a signal handler)."""
    _PROCESS.set()


def clear_stop() -> None:
    """Forget an earlier stop request (a long-lived process that starts a new run)."""
    _PROCESS.clear()


def stop_requested() -> bool:
    scoped = _SCOPE.get()
    return _PROCESS.is_set() or (scoped is not None and scoped.is_set())


def check_stop() -> None:
    """Raise `RunStopped` if this run was asked to stop."""
    if stop_requested():
        raise RunStopped("the run was stopped before it finished; nothing was published")


@contextlib.contextmanager
def stop_scope() -> Iterator[threading.Event]:
    """Work started inside (task-runner threads copy the context) stops when the block exits with an error."""
    event = threading.Event()
    token = _SCOPE.set(event)
    try:
        yield event
    except BaseException:
        event.set()
        raise
    finally:
        _SCOPE.reset(token)


def stoppable(callback: Callable[[Any], None] | None) -> Callable[[Any], None]:
    """Wrap a training progress callback so that each call first checks the stop flag."""

    def progress(event: Any) -> None:
        check_stop()
        if callback is not None:
            callback(event)

    return progress
