"""Which failures are worth a retry: transient I/O, never bad input.

Prefect retries every failure by default. A missing file, a typo in a table name or a failed validation will fail the
same way every time, and retrying them only delays the message the user needs. A dropped database connection, a
server that is restarting, or a flaky network filesystem may well work a second later. `retry_on_transient` is the
`retry_condition_fn` for the I/O tasks (ingest, publish, SQL write-back).

Our own errors wrap their cause (`raise InvalidInputError(...) from exc`), so the whole `__cause__` chain is read:
"cannot reach the database" is an InvalidInputError caused by an OperationalError, and is retried.
"""

from __future__ import annotations

import errno
from typing import Any

# errno values of OSErrors that can clear up on their own; FileNotFoundError, PermissionError, disk full... cannot.
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.EBUSY,
        errno.EINTR,
        errno.EIO,
        errno.ETIMEDOUT,
        errno.ESTALE,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
    }
)


def is_transient(exc: BaseException | None) -> bool:
    """True when `exc`, or any exception it was raised from, is a transient I/O or database-connection error."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConnectionError | TimeoutError):
            return True
        if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
            return True
        if _is_sqlalchemy_transient(exc):
            return True
        exc = exc.__cause__
    return False


def _is_sqlalchemy_transient(exc: BaseException) -> bool:
    try:
        from sqlalchemy import exc as sa_exc
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        return False
    return isinstance(exc, sa_exc.OperationalError | sa_exc.DisconnectionError | sa_exc.TimeoutError)


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only when the failed state holds a transient error."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as error:  # the state's result could not be read: judge the error we got instead
        exc = error
    return isinstance(exc, BaseException) and is_transient(exc)
