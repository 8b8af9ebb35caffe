"""The Prefect API a command-line run talks to: the configured server, a local one already running, or our own.

Prefect's own temporary server (started on the first flow call) costs its start-up time after every import, imports
the server's code into our process too, and is orphaned when the CLI is killed (it is stopped by `atexit`, which a
SIGKILL skips). Here the temporary server is started first thing, so it boots while the CLI imports torch and reads
the data; it runs in its own session (a Ctrl-C to the terminal reaches only the CLI, which still needs the server to
record the run's final state) and, on Linux, receives SIGTERM the moment its parent dies (`PR_SET_PDEATHSIG`).
See docs/decisions.md#temporary-server.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

LOCAL_SERVER = "http://127.0.0.1:4200/api"  # where `prefect server start` listens by default
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to send SIGTERM when the parent process dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str, timeout: float) -> bool:
    import httpx

    try:
        return httpx.get(url.rstrip("/") + "/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class TemporaryServer:
    """A Prefect API server (uvicorn) in a child process, started as Prefect starts its ephemeral one."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        prefect_dir = Path(importlib.util.find_spec("prefect").origin).parent  # no import of prefect here: it is slow
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent), "--factory",
                "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "error", "--lifespan", "on",
            ],
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )  # fmt: skip

    def wait_ready(self, timeout: float) -> None:
        """Block until the server answers its health check; raise if it exits or takes longer than `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the temporary Prefect server exited with code {self.process.returncode}")
            if _answers(self.url, timeout=1.0):
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"the temporary Prefect server did not answer within {timeout:.0f} s; raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or run `prefect server start` and set PREFECT_API_URL"
        )

    def stop(self) -> None:
        """Terminate the server and wait for it (it exits on SIGTERM in well under a second)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _drain_prefect_workers() -> None:
    """Send the queued run logs and events while our server still listens (else: 'Error logging to API')."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=5)


def configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile, if any."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


class PrefectApi:
    """The API for one command: `with PrefectApi() as api: <imports, reading>; api.ready(); <flow>`.

    In order: PREFECT_API_URL when set (the environment or the active profile); else a server already answering at
    the default local address, reused and logged; else a temporary server of our own, started on entering (it boots
    while the caller imports and reads) and stopped on exit, however the block ends.
    """

    def __init__(self, *, reuse_local: bool = True) -> None:
        self.reuse_local = reuse_local
        self.server: TemporaryServer | None = None
        self.url: str | None = None
        self.configured = False  # the URL came from PREFECT_API_URL or the active profile
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> PrefectApi:
        # Prefect already loaded (a test harness, a library caller): its settings answer at no cost, so ask first.
        self.url = os.environ.get("PREFECT_API_URL") or (
            configured_api_url() if "prefect.settings" in sys.modules else None
        )
        self.configured = bool(self.url)
        if not self.url:
            self.server = TemporaryServer()  # boots while prefect is imported below
            self.url = configured_api_url()
            self.configured = bool(self.url)
            if not self.url and self.reuse_local and _answers(LOCAL_SERVER, timeout=0.3):
                self.url = LOCAL_SERVER
                logger.warning(
                    "using the Prefect server already running at %s (set PREFECT_API_URL to choose)", self.url
                )
            if self.url:
                self.close_server()
        return self

    def ready(self, meanwhile: Callable[[], object] | None = None) -> str:
        """Wait for our temporary server (if we started one) and point Prefect at it; return the API URL.

        Args:
            meanwhile: work for this process while the server still boots (imports the run will need anyway): on a
                small machine the wait is otherwise a core left idle. Called only if the server is not up yet.
        """
        import prefect.context
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
            temporary_settings,
        )

        if self.server is not None:
            if meanwhile is not None and not _answers(self.server.url, timeout=0.2):
                meanwhile()
            self.server.wait_ready(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
            self.url = self.server.url
            # Heartbeats let a long-lived server spot crashed deployment runs; this server dies with the run, and
            # joining the heartbeat thread adds about a second to every flow call.
            updates = {PREFECT_API_URL: self.url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
            self._stack.enter_context(temporary_settings(updates))
            # Prefect's log and event threads read the process-wide settings, as in `prefect_test_harness`.
            self._stack.enter_context(
                prefect.context._temporary_global_settings_context(prefect.context.get_settings_context())
            )
            self._stack.callback(_drain_prefect_workers)  # runs first on exit: send what is queued, then stop
        return str(self.url)

    def check(self) -> None:
        """Fail fast, with the fix, when the configured server does not answer (see `check_prefect_api`)."""
        if self.configured and self.url:
            check_prefect_api(url=self.url)

    def close_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __exit__(self, *exc: object) -> None:
        try:
            self._stack.close()
        finally:
            self.close_server()


def check_prefect_api(timeout: float = 5.0, url: str | None = None) -> None:
    """Fail fast and clearly when PREFECT_API_URL names a server that does not answer.

    Without this, a typo in the URL or a stopped server surfaces as a long retry loop and a bare `httpx.ConnectError`.
    With PREFECT_API_URL unset there is nothing to check: a temporary local server is started.

    Raises:
        InvalidInputError: the server is unreachable or unhealthy; the message names the URL and what to check.
    """
    import httpx

    from synthgate.schemas.errors import InvalidInputError

    url = url or configured_api_url()
    if not url:
        return
    try:
        httpx.get(url.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except httpx.HTTPError as exc:
        raise InvalidInputError(
            f"the Prefect server at PREFECT_API_URL={url} is unreachable ({type(exc).__name__}: {exc}); check that "
            "`prefect server start` is running there and the URL ends in /api, or unset PREFECT_API_URL to let "
            "synthgate start a temporary local server"
        ) from exc
