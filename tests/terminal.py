"""What a terminal would show during an in-process CLI test: Prefect's console handler, captured."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def prefect_console() -> Iterator[io.StringIO]:
    """What Prefect's console handler would print to the terminal, collected in a buffer."""
    from prefect.logging.handlers import PrefectConsoleHandler

    buffer = io.StringIO()
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    saved = [(h, h.stream, h.console.file) for h in handlers]
    for handler in handlers:
        handler.stream = handler.console.file = buffer
    try:
        yield buffer
    finally:
        for handler, stream, file in saved:
            handler.stream, handler.console.file = stream, file
